"""Differential tests: ndconv against PyTorch (forward and all three gradients).

hypothesis draws random valid arguments: N = 1, 2, 3, batched or not, groups,
stride, dilation, every padding form and every padding mode; each is checked
for every algorithm in :data:`ndconv.algorithms.ALGORITHMS` (read at collection
time, so algorithms added later are covered) and for ``method='auto'``.
The reference is torch in float64 (from the same, possibly float32, numbers);
float64 results must agree to 1e-10 and float32 results to 1e-5 of
``max|ref|``, or of the same computation on absolute values where that is
larger (the result cancels: see ``_check_all``).

The same cases run with the inputs as arrays of other array-API libraries
(``array_api_strict``, torch CPU tensors, JAX CPU arrays with x64 enabled),
for the methods that compute on them (:func:`ndconv.algorithms.methods_for`):
every result must be an array of that library, on the input's device, in the
input's dtype, and agree with torch and with the NumPy path.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, torch_conv, torch_conv_transpose
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ndconv
from ndconv.algorithms import ALGORITHMS, methods_for

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

DTYPES = [np.float64, np.float32]


class Library:
    """An array library the suite feeds: how to make its arrays and read them back."""

    def __init__(self, name):
        self.name = name
        if name == "numpy":
            self.asarray, self.device = np.asarray, None
            return
        if name == "torch":
            self.asarray = lambda a: torch.asarray(a, device="cpu")
        elif name == "jax":
            jax = pytest.importorskip("jax")
            jax.config.update("jax_enable_x64", True)  # float64 stays float64
            self.asarray = jax.numpy.asarray
        else:
            self.asarray = pytest.importorskip(name).asarray
        self.device = self.asarray(np.zeros(1)).device

    def numpy(self, a, dtype, what):
        """``a`` as a NumPy array, after checking its library, device and dtype."""
        if self.name == "numpy":
            assert isinstance(a, np.ndarray), what
            return a
        assert ndconv.core._backends.library_of(a) == self.name, (what, type(a))
        assert a.device == self.device, (what, a.device)
        expected = self.asarray(np.zeros(1, dtype)).dtype
        assert a.dtype == expected, (what, a.dtype, expected)
        return np.from_dlpack(a) if self.name == "array_api_strict" else np.asarray(a)


METHODS = ["auto", *methods_for("numpy")]
# JAX compiles every operation for every new shape, which makes its portable
# path slow to test on random shapes; it runs its native method here, and
# the portable one in test_array_api.py (jax.grad through direct and gemm).
OTHER = [(lib, m) for lib in ("array_api_strict", "torch", "jax")
         for m in ["auto", *methods_for(lib)]
         if lib != "jax" or m in ("auto", "jax")]
OTHER_IDS = [f"{lib}-{m}" for lib, m in OTHER]
#: Fewer draws for the other libraries (the same code, the arrays' library
#: differs): a quarter of the profile's, at least 5.
other_settings = settings(max_examples=max(5, settings.default.max_examples // 4))


def _declined(exc, method):
    """An algorithm may decline a spec it does not handle ('auto' never may).

    Declined draws are rejected (cheaply, before any reference is computed) so
    that hypothesis looks for cases the method does handle.
    """
    if method == "auto" or "cannot compute this correlation" not in str(exc):
        raise exc
    assume(False)


@st.composite
def conv_cases(draw, ndims=(1, 2, 3)):
    """Random valid arguments for ``conv``, and the padding torch should get."""
    n = draw(st.sampled_from(ndims))
    groups = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 3))
    og = draw(st.integers(1, 2))
    batch = draw(st.sampled_from([None, 1, 2]))  # None: unbatched
    # Half the draws are the common CNN layer (3x..x3, stride 1, dilation 1),
    # which restricted methods (winograd) handle; the rest roam freely.
    common = draw(st.booleans())
    k = (3,) * n if common else tuple(draw(st.integers(1, 3)) for _ in range(n))
    d = (1,) * n if common else tuple(draw(st.integers(1, 2)) for _ in range(n))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    form = draw(st.sampled_from(["int", "tuple", "pairs", "valid", "same", "full"]))
    s = ((1,) * n if form == "same" or common
         else tuple(draw(st.integers(1, 3)) for _ in range(n)))
    span = [dd * (kk - 1) for kk, dd in zip(k, d)]
    if form == "int":
        p = draw(st.integers(0, 2))
        padding, pairs = p, ((p, p),) * n
    elif form == "tuple":
        padding = tuple(draw(st.integers(0, 2)) for _ in range(n))
        pairs = tuple((p, p) for p in padding)
    elif form == "pairs":
        pairs = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(n))
        padding = pairs
    elif form == "valid":
        padding, pairs = "valid", ((0, 0),) * n
    elif form == "same":
        # PyTorch's rule: d*(k-1) in total, the odd one at the end.
        padding, pairs = "same", tuple((t // 2, t - t // 2) for t in span)
    else:
        padding, pairs = "full", tuple((t, t) for t in span)
    # Smallest input size that fits the kernel and the boundary mode, plus some.
    sizes = []
    for (lo, hi), sp in zip(pairs, span):
        need = max(1, sp + 1 - lo - hi)
        if mode == "reflect":
            need = max(need, max(lo, hi) + 1)
        elif mode == "circular":
            need = max(need, max(lo, hi))
        sizes.append(need + draw(st.integers(0, 3)))
    # torch gets explicit pairs whenever it could not do the padding itself.
    if mode != "zeros" or form in ("pairs", "full"):
        tpad = pairs
    else:
        tpad = padding
    with_bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    lead = () if batch is None else (batch,)
    return dict(
        x_shape=(*lead, groups * cg, *sizes), w_shape=(groups * og, cg, *k),
        bias=with_bias, stride=s, padding=padding, dilation=d, groups=groups,
        padding_mode=mode, torch_padding=tpad, seed=seed,
    )


@st.composite
def transpose_cases(draw, ndims=(1, 2, 3)):
    n = draw(st.sampled_from(ndims))
    groups = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 3))
    og = draw(st.integers(1, 2))
    batch = draw(st.sampled_from([None, 1, 2]))
    common = draw(st.booleans())  # as in conv_cases
    k = (3,) * n if common else tuple(draw(st.integers(1, 3)) for _ in range(n))
    s = tuple(draw(st.integers(1, 3)) for _ in range(n))
    d = (1,) * n if common else tuple(draw(st.integers(1, 2)) for _ in range(n))
    p = tuple(draw(st.integers(0, 2)) for _ in range(n))
    # PyTorch: output_padding < stride or < dilation.
    op = tuple(draw(st.integers(0, max(ss, dd) - 1)) for ss, dd in zip(s, d))
    sizes = []
    for kk, ss, dd, pp, oo in zip(k, s, d, p, op):
        # Output size (S-1)*s - 2p + d(k-1) + op + 1 must be positive.
        size = draw(st.integers(1, 4))
        while (size - 1) * ss - 2 * pp + dd * (kk - 1) + oo + 1 < 1:
            size += 1
        sizes.append(size)
    lead = () if batch is None else (batch,)
    return dict(
        x_shape=(*lead, groups * cg, *sizes), w_shape=(groups * cg, og, *k),
        bias=draw(st.booleans()), stride=s, padding=p, output_padding=op,
        dilation=d, groups=groups, seed=draw(st.integers(0, 2**32 - 1)),
    )


def _abs(x, w, b):
    return np.abs(x), np.abs(w), None if b is None else np.abs(b)


def _check_all(results, refs, mags, x, w, gy, dtype):
    """Compare (out, grad_x, grad_weight, grad_bias) with torch's.

    ``mags`` is the same computation on absolute values: the scale of the
    floating-point error bound. It only matters when a result cancels (the
    bias gradient sums random signs), where a bound relative to ``max|ref|``
    alone would demand more than any floating-point sum can give. An exact
    zero result (every tap in the zero padding) keeps the size of one product
    term as its scale: FFT-based methods spread rounding over every output.
    """
    names = ("forward", "grad_x", "grad_weight", "grad_bias")
    refs, mags = list(refs), list(mags)
    if refs[3] is None:
        # torch gives no bias gradient without a bias; ndconv always returns
        # one: the sum of gy over every axis but the channel axis.
        ch = gy.ndim - w.ndim + 1
        axes = tuple(i for i in range(gy.ndim) if i != ch)
        refs[3] = gy.astype(np.float64).sum(axis=axes)
        mags[3] = np.abs(gy.astype(np.float64)).sum(axis=axes)
    xm, wm, gm = (float(np.max(np.abs(a))) for a in (x, w, gy))
    terms = (xm * wm, gm * wm, xm * gm, gm)
    for a, ref, mag, term, name in zip(results, refs, mags, terms, names):
        assert_close(a, ref, dtype, name, magnitude=np.maximum(np.abs(mag), term))


def _arrays(case, dtype, method="auto"):
    """Random ``x`` and ``w``; for a method that needs particular kernel values
    (its record's ``applies``: separable takes rank-1 kernels), ``w`` is
    given them: each kernel an outer product of random 1-D kernels."""
    r = np.random.default_rng(case["seed"])
    x = r.standard_normal(case["x_shape"]).astype(dtype)
    shape = case["w_shape"]
    if method != "auto" and ALGORITHMS[method].applies is not None:
        w = np.ones(shape)
        for i in range(2, len(shape)):
            f = r.standard_normal(shape[:2] + (shape[i],))
            w = w * np.expand_dims(f, tuple(j for j in range(2, len(shape)) if j != i))
        return r, x, w.astype(dtype)
    return r, x, r.standard_normal(shape).astype(dtype)


def _run_as(lib, dtype, fn, arrays, *args, **kw):
    """``fn(*arrays, *args)``, ``arrays`` made ``lib``'s (None stays None); results as NumPy."""
    L = Library(lib)
    out = fn(*(None if a is None else L.asarray(a) for a in arrays), *args, **kw)
    if isinstance(out, tuple):
        return tuple(L.numpy(o, dtype, f"{fn.__name__}[{i}]") for i, o in enumerate(out))
    return L.numpy(out, dtype, fn.__name__)


def _same_as_numpy(got, ref, dtype, what):
    """Another library's result against the NumPy path's (both checked against torch)."""
    for i, (a, r) in enumerate(zip(got if isinstance(got, tuple) else (got,),
                                   ref if isinstance(ref, tuple) else (ref,))):
        assert_close(a, r, dtype, f"{what}[{i}] vs the NumPy path",
                     magnitude=np.abs(r) + 1.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("method", METHODS)
@given(case=conv_cases())
def test_conv_forward_and_gradients_match_torch(case, method, dtype):
    _check_conv(case, "numpy", method, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("lib, method", OTHER, ids=OTHER_IDS)
@other_settings
@given(case=conv_cases())
def test_conv_other_libraries_match_torch_and_numpy(case, lib, method, dtype):
    _check_conv(case, lib, method, dtype)


def _check_conv(case, lib, method, dtype):
    r, x, w = _arrays(case, dtype, method)
    out_ch = case["w_shape"][0]
    b = r.standard_normal(out_ch).astype(dtype) if case["bias"] else None
    args = (case["stride"], case["padding"], case["dilation"], case["groups"],
            case["padding_mode"])
    try:
        y = _run_as(lib, dtype, ndconv.conv, (x, w, b), *args, method=method)
    except ValueError as exc:
        _declined(exc, method)
        return
    gy = r.standard_normal(y.shape).astype(dtype)
    targs = (case["stride"], case["torch_padding"], case["dilation"], case["groups"],
             case["padding_mode"])
    refs = torch_conv(x, w, b, *targs, gy=gy)
    mags = torch_conv(*_abs(x, w, b), *targs, gy=np.abs(gy))
    try:
        gx, gw, gb = _run_as(lib, dtype, ndconv.conv_backward, (gy, x, w), *args,
                             method=method)
    except ValueError as exc:
        # A restricted method (winograd: 3x3 only) may decline the gradient's
        # correlations; the forward must still be right.
        if method == "auto" or "cannot compute this correlation" not in str(exc):
            raise
        assert_close(y, refs[0], dtype, "forward", magnitude=mags[0])
        return
    _check_all((y, gx, gw, gb), refs, mags, x, w, gy, dtype)
    if lib != "numpy":
        _same_as_numpy((y, gx, gw, gb), (ndconv.conv(x, w, b, *args),
                                         *ndconv.conv_backward(gy, x, w, *args)),
                       dtype, "conv")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("method", METHODS)
@given(case=transpose_cases())
def test_conv_transpose_forward_and_gradients_match_torch(case, method, dtype):
    _check_transpose(case, "numpy", method, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("lib, method", OTHER, ids=OTHER_IDS)
@other_settings
@given(case=transpose_cases())
def test_conv_transpose_other_libraries_match_torch_and_numpy(case, lib, method, dtype):
    _check_transpose(case, lib, method, dtype)


def _check_transpose(case, lib, method, dtype):
    r, x, w = _arrays(case, dtype, method)
    out_ch = case["w_shape"][1] * case["groups"]
    b = r.standard_normal(out_ch).astype(dtype) if case["bias"] else None
    args = (case["stride"], case["padding"], case["output_padding"], case["groups"],
            case["dilation"])
    try:
        y = _run_as(lib, dtype, ndconv.conv_transpose, (x, w, b), *args, method=method)
    except ValueError as exc:
        _declined(exc, method)
        return
    gy = r.standard_normal(y.shape).astype(dtype)
    refs = torch_conv_transpose(x, w, b, *args, gy=gy)
    mags = torch_conv_transpose(*_abs(x, w, b), *args, gy=np.abs(gy))
    try:
        gx, gw, gb = _run_as(lib, dtype, ndconv.conv_transpose_backward, (gy, x, w), *args,
                             method=method)
    except ValueError as exc:
        # A restricted method (winograd: 3x3 only) may decline the gradient's
        # correlations; the forward must still be right.
        if method == "auto" or "cannot compute this correlation" not in str(exc):
            raise
        assert_close(y, refs[0], dtype, "forward", magnitude=mags[0])
        return
    _check_all((y, gx, gw, gb), refs, mags, x, w, gy, dtype)
    if lib != "numpy":
        _same_as_numpy((y, gx, gw, gb), (ndconv.conv_transpose(x, w, b, *args),
                                         *ndconv.conv_transpose_backward(gy, x, w, *args)),
                       dtype, "conv_transpose")
