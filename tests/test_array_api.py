"""Arrays of other libraries: the result's library, device and dtype; autograd
and jax.grad through ndconv against ndconv's own gradients; mixing libraries;
the memory guard on devices; CuPy on a GPU; and the package's import graph.

(The PyTorch parity suite, tests/test_torch_parity.py, runs every conv case
with array_api_strict, torch and JAX inputs as well.)
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest

import ndconv
from ndconv import pooling
from ndconv.algorithms import methods_for

torch = pytest.importorskip("torch")
xs = pytest.importorskip("array_api_strict")

KW = dict(stride=(2, 1), padding=((1, 2), (0, 1)), dilation=(1, 2), groups=2)


def _case(seed=0, mode="zeros"):
    r = np.random.default_rng(seed)
    x = r.standard_normal((2, 4, 9, 8))
    w = r.standard_normal((6, 2, 3, 3))
    b = r.standard_normal(6)
    y = ndconv.conv(x, w, b, **KW, padding_mode=mode)
    gy = r.standard_normal(y.shape)
    return x, w, b, gy


def _jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


def _np(a):
    return np.from_dlpack(a) if type(a).__module__.startswith("array_api_strict") else np.asarray(a)


# --------------------------------------------------------------------------
# autograd / jax.grad through conv == conv_backward


@pytest.mark.parametrize("mode", ["zeros", "reflect", "circular"])
@pytest.mark.parametrize("method", ["auto", *methods_for("torch")])
def test_torch_autograd_through_conv_equals_conv_backward(method, mode):
    x, w, b, gy = _case(1, mode)
    gx, gw, gb = ndconv.conv_backward(gy, x, w, **KW, padding_mode=mode)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = ndconv.conv(xt, wt, bt, **KW, padding_mode=mode, method=method)
    assert isinstance(y, torch.Tensor) and y.requires_grad
    y.backward(torch.tensor(gy))
    for got, ref in ((xt.grad, gx), (wt.grad, gw), (bt.grad, gb)):
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["auto", *methods_for("torch")])
def test_torch_autograd_through_conv_transpose_and_pooling(method):
    r = np.random.default_rng(2)
    x, w = r.standard_normal((2, 4, 5, 6)), r.standard_normal((4, 3, 3, 2))
    args = (None, 2, 1, 1, 2, 1)
    y = ndconv.conv_transpose(x, w, *args)
    gy = r.standard_normal(y.shape)
    gx, gw, _ = ndconv.conv_transpose_backward(gy, x, w, *args[1:])
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ndconv.conv_transpose(xt, wt, *args, method=method).backward(torch.tensor(gy))
    np.testing.assert_allclose(xt.grad.numpy(), gx, atol=1e-12)
    np.testing.assert_allclose(wt.grad.numpy(), gw, atol=1e-12)
    # pooling: autograd through the portable max/avg pool == their backwards
    kw = dict(stride=(2, 1), padding=1, ceil_mode=True)
    for fwd, bwd, extra in ((ndconv.max_pool, pooling.max_pool_backward, {"dilation": 2}),
                            (ndconv.avg_pool, pooling.avg_pool_backward, {})):
        p = fwd(x, (3, 2), **kw, **extra)
        g = r.standard_normal(p.shape)
        ref = bwd(g, x, (3, 2), **kw, **extra)
        xt = torch.tensor(x, requires_grad=True)
        fwd(xt, (3, 2), **kw, **extra).backward(torch.tensor(g))
        np.testing.assert_allclose(xt.grad.numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("method", ["auto", *methods_for("jax")])
def test_jax_grad_through_conv_equals_conv_backward(method):
    jax = _jax()
    jnp = jax.numpy
    x, w, b, gy = _case(3, "replicate")
    gx, gw, gb = ndconv.conv_backward(gy, x, w, **KW, padding_mode="replicate")

    def loss(a, k, c):
        y = ndconv.conv(a, k, c, **KW, padding_mode="replicate", method=method)
        return jnp.sum(y * gy)

    got = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(x), jnp.asarray(w), jnp.asarray(b))
    for g, ref in zip(got, (gx, gw, gb)):
        assert g.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(g), ref, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# result library, device, dtype for the plain and pooling functions


def _libraries():
    libs = [("array_api_strict", xs.asarray), ("torch", torch.asarray)]
    try:
        jax = _jax()
        libs.append(("jax", jax.numpy.asarray))
    except pytest.skip.Exception:
        pass
    return libs


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
def test_correlate_convolve_follow_the_numpy_path(mode, flip):
    r = np.random.default_rng(4)
    fn = ndconv.convolve if flip else ndconv.correlate
    cases = [
        (r.standard_normal((9, 7)).astype(np.float32), r.standard_normal((3, 2)).astype(np.float32), 0.5),
        (r.integers(-5, 5, (6, 5)), r.integers(-2, 3, (2, 3)), 0.0),  # int: float64 out
        (r.standard_normal((2, 3)), r.standard_normal((4, 5)), 1.0),  # 'valid' swaps
    ]
    for name, asarray in _libraries():
        for a, k, bias in cases:
            ref = fn(a, k, bias, mode)
            got = fn(asarray(a), asarray(k), bias, mode)
            assert ndconv.core._backends.library_of(got) == name
            assert got.dtype == asarray(np.zeros(1, ref.dtype)).dtype, (name, got.dtype)
            assert got.device == asarray(a).device
            np.testing.assert_allclose(_np(got), ref, rtol=1e-5, atol=1e-4)


def test_pooling_follows_the_numpy_path_nan_and_inf_included():
    r = np.random.default_rng(5)
    x = r.standard_normal((2, 3, 9, 8)).astype(np.float32)
    x[0, 0, 0, 0], x[1, 1, :3, :3] = np.nan, -np.inf
    kw = dict(stride=(2, 1), padding=1, ceil_mode=True)
    y, a = ndconv.max_pool(x, (3, 2), **kw, dilation=(1, 2)), ndconv.avg_pool(x, (3, 2), **kw)
    gy = r.standard_normal(y.shape).astype(np.float32)
    ga = r.standard_normal(a.shape).astype(np.float32)
    refs = (y, pooling.max_pool_backward(gy, x, (3, 2), **kw, dilation=(1, 2)), a,
            pooling.avg_pool_backward(ga, x, (3, 2), **kw))
    for name, asarray in _libraries():
        X = asarray(x)
        got = (ndconv.max_pool(X, (3, 2), **kw, dilation=(1, 2)),
               pooling.max_pool_backward(asarray(gy), X, (3, 2), **kw, dilation=(1, 2)),
               ndconv.avg_pool(X, (3, 2), **kw),
               pooling.avg_pool_backward(asarray(ga), X, (3, 2), **kw))
        for g, ref in zip(got, refs):
            assert ndconv.core._backends.library_of(g) == name and g.dtype == X.dtype
            np.testing.assert_allclose(_np(g), ref, rtol=1e-6, atol=1e-6)


def test_python_sequences_go_to_the_arrays_library_and_device():
    x = torch.zeros((1, 1, 5), dtype=torch.float64)
    y = ndconv.conv(x, [[[1, 2, 3]]])  # a list of ints: float64, as for NumPy
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64


def test_errors_name_the_library_rule_as_numpy_does():
    with pytest.raises(TypeError, match="`weight` must be float16, .* got dtype bool"):
        ndconv.conv(torch.zeros((1, 1, 8), dtype=torch.bool), torch.zeros((1, 1, 3), dtype=torch.bool))
    # integers are exact, as on the NumPy path (the portable methods; torch's own declines)
    xi, wi = np.arange(16, dtype=np.int32).reshape(1, 2, 8), np.arange(-3, 3, dtype=np.int32).reshape(1, 2, 3)
    yi = ndconv.conv(torch.asarray(xi), torch.asarray(wi), padding=1, padding_mode="circular")
    assert yi.dtype == torch.int32
    np.testing.assert_array_equal(yi.numpy(), ndconv.conv(xi, wi, padding=1, padding_mode="circular"))
    with pytest.raises(TypeError, match=r"`x` \(dtype torch.float32\) and `weight`"):
        ndconv.conv(torch.zeros((1, 1, 8)), torch.zeros((1, 1, 3), dtype=torch.float64))
    with pytest.raises(ValueError, match=r"`x` \(shape \(1, 1, 0\)\) is empty in dim 2"):
        ndconv.conv(torch.zeros((1, 1, 0)), torch.zeros((1, 1, 3)))
    with pytest.raises(ValueError, match="cannot compute this correlation: needs NumPy"):
        ndconv.conv(torch.zeros((1, 1, 8)), torch.zeros((1, 1, 3)), method="fft")
    with pytest.raises(ValueError, match="cannot compute this correlation: computes on torch arrays, not numpy"):
        ndconv.conv(np.zeros((1, 1, 8)), np.zeros((1, 1, 3)), method="torch")


# --------------------------------------------------------------------------
# one library per call


@pytest.mark.parametrize(
    "call",
    [
        lambda t, n: ndconv.conv(t, n),
        lambda t, n: ndconv.conv(n, t),
        lambda t, n: ndconv.conv(n, n[:1], t[0, :1, 0]),
        lambda t, n: ndconv.conv_backward(t[:, :1, :6], n, n[:1]),
        lambda t, n: ndconv.correlate(t[0, 0], n[0, 0]),
        lambda t, n: pooling.max_pool_backward(t, n, (2,)),
    ],
)
def test_mixing_libraries_is_a_type_error_naming_both(call):
    n = np.zeros((1, 3, 8))
    t = torch.zeros((1, 3, 8), dtype=torch.float64)
    with pytest.raises(TypeError, match="torch array and .* numpy array|numpy.*torch"):
        call(t, n)


def test_mixing_two_non_numpy_libraries():
    with pytest.raises(TypeError, match="`x` is a torch array and `weight` a array_api_strict"):
        ndconv.conv(torch.zeros((1, 1, 8), dtype=torch.float64), xs.zeros((1, 1, 3)))


# --------------------------------------------------------------------------
# the memory guard never reads host memory for device arrays


def test_memory_guard_on_a_device_compares_with_a_set_limit_only(monkeypatch):
    from ndconv.core import _memory
    from ndconv.algorithms import CorrSpec, check_memory
    from ndconv.plan import MemoryLimitError, memory_limit

    def host_read():
        raise AssertionError("read the host's memory for a device array")

    import array_api_compat.torch as xpt

    spec = CorrSpec(
        batch=1, in_channels=1, out_channels=1, groups=1, in_spatial=(100000, 10000),
        kernel_size=(1, 1), stride=(1, 1), dilation=(1, 1), pairs=((0, 0), (0, 0)),
        lhs_dilation=(1, 1), padding_mode="zeros", dtype=np.dtype(np.float32), xp=xpt,
    )  # 8 GB of input and output
    on_gpu = types.SimpleNamespace(device=types.SimpleNamespace(type="cuda", index=0))
    monkeypatch.setattr(_memory, "available_memory", host_read)
    assert _memory.device_free_memory("torch", on_gpu) is None  # no CUDA here: unknown
    check_memory(spec, x=on_gpu)  # no limit set, device says nothing: allowed
    with memory_limit("1GB"), pytest.raises(MemoryLimitError, match="8 GB"):
        check_memory(spec, x=on_gpu)
    # a device that reports its free memory is compared with it
    monkeypatch.setattr(_memory, "device_free_memory", lambda lib, x: 2 * 10**9)
    with pytest.raises(MemoryLimitError, match="the device's free memory"):
        check_memory(spec, x=on_gpu)
    # torch CPU tensors are in host memory: the host's is read
    monkeypatch.undo()
    monkeypatch.setattr(_memory, "available_memory", lambda: 10**9)
    with pytest.raises(MemoryLimitError, match="the memory available now"):
        check_memory(spec, x=torch.zeros(1))


# --------------------------------------------------------------------------
# CuPy on a GPU (runs only where both are present)


def _cupy():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (no GPU here)")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("CuPy is installed but sees no GPU")
    except Exception as exc:  # noqa: BLE001 - CUDA missing or broken
        pytest.skip(f"CuPy is installed but has no working GPU: {exc}")
    return cupy


def test_cupy_conv_gradients_correlate_pool_on_the_gpu():
    cupy = _cupy()
    x, w, b, gy = _case(6, "reflect")
    X, W, B, GY = (cupy.asarray(a) for a in (x, w, b, gy))
    y = ndconv.conv(X, W, B, **KW, padding_mode="reflect")
    assert isinstance(y, cupy.ndarray) and y.device == X.device and y.dtype == X.dtype
    np.testing.assert_allclose(y.get(), ndconv.conv(x, w, b, **KW, padding_mode="reflect"),
                               atol=1e-10)
    for g, ref in zip(ndconv.conv_backward(GY, X, W, **KW, padding_mode="reflect"),
                      ndconv.conv_backward(gy, x, w, **KW, padding_mode="reflect")):
        assert isinstance(g, cupy.ndarray)
        np.testing.assert_allclose(g.get(), ref, atol=1e-10)
    np.testing.assert_allclose(ndconv.correlate(X[0, 0], W[0, 0], 1.0, "same").get(),
                               ndconv.correlate(x[0, 0], w[0, 0], 1.0, "same"), atol=1e-10)
    np.testing.assert_allclose(ndconv.max_pool(X, (2, 2)).get(), ndconv.max_pool(x, (2, 2)))


# --------------------------------------------------------------------------
# the package's import graph


SRC = pathlib.Path(ndconv.__file__).parent


def _module_name(path):
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path, top_level_only):
    """Package modules ``path`` imports (relative and absolute ``ndconv`` imports)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("ndconv"):
                continue
            for alias in node.names:  # `from . import x` imports the submodule x
                sub = f"{mod}.{alias.name}"
                is_module = (SRC.parent / sub.replace(".", "/")).with_suffix(".py").exists() \
                    or (SRC.parent / sub.replace(".", "/") / "__init__.py").exists()
                found.add(sub if is_module else mod)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ndconv")}
    found.discard(name)
    return found


def _graph(top_level_only):
    return {_module_name(p): _imports(p, top_level_only) for p in SRC.rglob("*.py")}


def test_no_import_cycle_at_import_time():
    graph = _graph(top_level_only=True)
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if nxt not in graph or nxt == "ndconv":
                continue  # the package itself is importing already
            if state.get(nxt) == "open":
                raise AssertionError(f"import cycle: {' -> '.join(stack + [nxt])}")
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])


def test_functional_and_dask_do_not_import_each_other_at_all():
    graph = _graph(top_level_only=False)
    assert "ndconv.dask" not in graph["ndconv.core.functional"]
    assert not {"ndconv.functional", "ndconv.core.functional"} & graph["ndconv.dask"]
    assert "ndconv.dask" not in graph["ndconv.core._backends"]  # named in PLUGINS, loaded by name


def test_every_module_imports_alone_and_ndconv_stays_numpy_only():
    mods = sorted(m for m in _graph(True) if not m.startswith("ndconv.cli.")
                  and not m.endswith(".__main__"))
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    lean = ("import sys, ndconv; heavy = {'torch', 'jax', 'array_api_compat', 'dask', 'cupy'}"
            " & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", lean], check=True)
