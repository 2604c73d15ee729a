"""The compiled paths of the gemm method (``core/algorithms/_gemm_jit.py``).

``'positions'`` packs tiles of output positions channel-major and writes each
product into the output; ``'taps'`` (few outputs, many taps: the weight
gradient's correlation) packs tiles of one channel's taps and accumulates.
Both are checked against the float64 reference and against PyTorch, on the
shapes the thresholds route to them and, with the thresholds lowered, on
small odd ones (stride, dilation, groups, padding modes, input dilation,
cropping, batch 1, non-contiguous input); the float32 bound is 1e-5 of
``max|y|`` against float64, as for every method.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from test_algorithms import _arrays, spec_ref, specs

import ndconv
from ndconv.algorithms import ALGORITHMS, CorrSpec, gemm

pytest.importorskip("numba")
torch = pytest.importorskip("torch")
tF = pytest.importorskip("torch.nn.functional")


@pytest.fixture
def everywhere(monkeypatch):
    """Route every float correlation to a compiled path (small shapes included,
    which otherwise take the one-gather path)."""
    monkeypatch.setattr(gemm, "GATHER_ENTRIES", 0)
    monkeypatch.setattr(gemm, "PACK_MIN_POSITIONS", 1)
    monkeypatch.setattr(gemm, "PACK_MIN_TAPS", 1)


def _spec(xs, ws, stride=1, dilation=1, pairs=None, groups=1, lhs=1, mode="zeros",
          dtype=np.float32):
    n = len(ws) - 2
    return CorrSpec(
        batch=xs[0], in_channels=xs[1], out_channels=ws[0], groups=groups,
        in_spatial=tuple(xs[2:]), kernel_size=tuple(ws[2:]), stride=(stride,) * n,
        dilation=(dilation,) * n, pairs=pairs or ((0, 0),) * n, lhs_dilation=(lhs,) * n,
        padding_mode=mode, dtype=np.dtype(dtype),
    )


def _rel_err(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("xs, ws, kw, path", [
    ((1, 3, 37, 41), (8, 3, 7, 7), dict(stride=2, pairs=((3, 3), (3, 3))), "positions"),
    ((2, 5, 9, 10, 11), (4, 5, 3, 3, 3), dict(pairs=((1, 1),) * 3), "positions"),
    ((3, 4, 1500), (6, 2, 9), dict(groups=2, dilation=2), "positions"),
    ((2, 6, 33, 37), (6, 3, 3, 3), dict(groups=2, pairs=((1, 0), (2, 1))), "positions"),
    ((8, 3, 15, 16), (5, 3, 11, 12), dict(stride=1), "taps"),
    ((3, 2, 80, 40), (4, 1, 72, 36), dict(groups=2, stride=2), "taps"),
])
def test_default_thresholds_route_and_match(xs, ws, kw, path):
    """Shapes past the one-gather path's size take the compiled paths as they are."""
    spec = _spec(xs, ws, **kw)
    assert gemm.packing(spec) == path
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    got = ndconv.algorithms.run(x, w, spec, "gemm")
    assert got.dtype == np.float32 and got.shape == spec.out_shape
    assert _rel_err(got, spec_ref(x, w, spec)) < 1e-5


@settings(max_examples=60, deadline=None)
@given(specs())
def test_every_spec_compiled(spec):
    """Hypothesis' general correlations (input dilation, cropping, padding
    modes, groups), every one through a compiled path (odd tap counts through
    the loop over positions, even ones over taps)."""
    x, w = _arrays(spec)
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(gemm, "PACK_MIN_POSITIONS", 1 if spec.taps % 2 else 10**9)
        mp.setattr(gemm, "PACK_MIN_TAPS", 1)
        mp.setattr(gemm, "GATHER_ENTRIES", 0)
        assert gemm.packing(spec) is not None or spec.dtype.kind not in "fc"
        got = ndconv.algorithms.run(x, w, spec, "gemm")
    finally:
        mp.undo()
    want = spec_ref(x, w, spec)
    scale = max(np.abs(want).max(), 1e-30)
    tol = 1e-5 if spec.dtype == np.float32 else 1e-12
    assert np.abs(got - want).max() <= tol * scale + 1e-30


@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
def test_other_float_dtypes(everywhere, dtype):
    spec = _spec((2, 3, 9, 8), (4, 3, 3, 2), stride=2, pairs=((1, 1), (0, 2)), dtype=dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.standard_normal(x.shape).astype(dtype)
        w = w + 1j * rng.standard_normal(w.shape).astype(dtype)
    got = ndconv.algorithms.run(x, w, spec, "gemm")
    ref = np.asarray(ALGORITHMS["direct"].run(x.astype(np.complex128), w.astype(np.complex128),
                                              _spec((2, 3, 9, 8), (4, 3, 3, 2), stride=2,
                                                    pairs=((1, 1), (0, 2)),
                                                    dtype=np.complex128)))
    assert got.dtype == dtype
    assert _rel_err(got, ref) < (1e-5 if np.dtype(dtype).itemsize <= 8 else 1e-12)


def test_integers_keep_the_numpy_path():
    spec = _spec((1, 2, 30, 30), (3, 2, 3, 3), dtype=np.int32)
    assert gemm.packing(spec) is None
    x = np.arange(1800, dtype=np.int32).reshape(1, 2, 30, 30) % 7
    w = np.ones((3, 2, 3, 3), np.int32)
    got = ndconv.algorithms.run(x, w, spec, "gemm")
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, spec_ref(x, w, spec).astype(np.int64))


def test_without_numba_the_numpy_path(monkeypatch):
    """Where numba is absent the NumPy im2col runs, with the same result."""
    spec = _spec((1, 3, 40, 40), (8, 3, 7, 7), stride=2, pairs=((3, 3), (3, 3)))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 3, 40, 40)).astype(np.float32)
    w = rng.standard_normal((8, 3, 7, 7)).astype(np.float32)
    packed = ndconv.algorithms.run(x, w, spec, "gemm")
    monkeypatch.setattr(gemm, "_numba_installed", lambda: False)
    assert gemm.packing(spec) is None
    plain = ndconv.algorithms.run(x, w, spec, "gemm")
    np.testing.assert_allclose(packed, plain, rtol=0, atol=1e-5 * np.abs(plain).max())


CASES = [  # x shape, w shape, stride, padding, dilation, groups, padding_mode
    ((1, 3, 61, 57), (16, 3, 7, 7), 2, 3, 1, 1, "zeros"),
    ((2, 4, 7, 9, 11), (6, 4, 3, 3, 3), 1, 1, 1, 1, "zeros"),
    ((3, 8, 301), (8, 4, 9), 1, 4, 2, 2, "reflect"),
    ((2, 6, 23, 21), (9, 2, 3, 5), (1, 2), (1, 2), 1, 3, "circular"),
    ((1, 4, 33, 35), (4, 4, 5, 5), 3, 2, 2, 1, "replicate"),
]


def check_against_torch(xs, ws, s, p, d, g, mode, dtype=np.float32, seed=3):
    """conv and conv_backward with ``method='gemm'`` (forward, input and
    weight gradients), non-contiguous input, against float64 PyTorch: within
    1e-5 (float32) or 1e-12 (float64) of the largest value."""
    rng = np.random.default_rng(seed)
    xbig = rng.standard_normal(xs[:-1] + (2 * xs[-1],)).astype(dtype)
    x = xbig[..., ::2]  # non-contiguous
    w = rng.standard_normal(ws).astype(dtype)
    y = ndconv.conv(x, w, None, s, p, d, g, mode, method="gemm")
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx, gw, _ = ndconv.conv_backward(gy, x, w, s, p, d, g, mode, method="gemm")
    conv = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[len(ws) - 2]
    layer = conv(xs[1], ws[0], ws[2:], s, p, d, g, bias=False, padding_mode=mode).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w.astype(np.float64)))
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float64)).requires_grad_(True)
    yt = layer(xt)
    yt.backward(torch.from_numpy(gy.astype(np.float64)))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype and gx.dtype == dtype and gw.dtype == dtype
    assert _rel_err(y, yt.detach().numpy()) < tol
    assert _rel_err(gx, xt.grad.numpy()) < tol
    assert _rel_err(gw, layer.weight.grad.numpy()) < tol


@pytest.mark.parametrize("xs, ws, s, p, d, g, mode", CASES)
def test_conv_and_gradients_against_torch(everywhere, xs, ws, s, p, d, g, mode):
    """The compiled paths against PyTorch (:func:`check_against_torch`)."""
    check_against_torch(xs, ws, s, p, d, g, mode)


def test_auto_takes_packed_gemm_where_it_is_fastest():
    """The cost model's picks for the CNN suite's stem, 1-D and 3-D layers."""
    from ndconv.algorithms.choose import choose

    stem = _spec((1, 3, 224, 224), (64, 3, 7, 7), stride=2, pairs=((3, 3), (3, 3)))
    conv1d = _spec((16, 64, 4096), (64, 64, 9))
    conv3d = _spec((2, 16, 32, 64, 64), (32, 16, 3, 3, 3), pairs=((1, 1),) * 3)
    for spec in (stem, conv1d, conv3d):
        assert gemm.packing(spec) == "positions"
        assert choose(spec)[0] == "gemm"
    # The weight gradient of the 3-D layer: the kernel is the output gradient.
    wgrad = CorrSpec(batch=16, in_channels=2, out_channels=32, groups=1,
                     in_spatial=(32, 64, 64), kernel_size=(32, 64, 64), stride=(1,) * 3,
                     dilation=(1,) * 3, pairs=((1, 1),) * 3, lhs_dilation=(1,) * 3,
                     padding_mode="zeros", dtype=np.dtype(np.float32))
    assert gemm.packing(wgrad) == "taps"
    assert choose(wgrad)[0] == "gemm"


def test_threads_give_the_same_result(everywhere):
    spec = _spec((2, 3, 50, 50), (8, 3, 5, 5), pairs=((2, 2), (2, 2)))
    wspec = _spec((3, 2, 30, 30), (8, 2, 26, 26))
    rng = np.random.default_rng(4)
    arrays = [(rng.standard_normal((2, 3, 50, 50)).astype(np.float32),
               rng.standard_normal((8, 3, 5, 5)).astype(np.float32), spec),
              (rng.standard_normal((3, 2, 30, 30)).astype(np.float32),
               rng.standard_normal((8, 2, 26, 26)).astype(np.float32), wspec)]
    before = ndconv.get_num_threads()
    try:
        for x, w, sp in arrays:
            ndconv.set_num_threads(1)
            one = ndconv.algorithms.run(x, w, sp, "gemm")
            ndconv.set_num_threads(2)
            two = ndconv.algorithms.run(x, w, sp, "gemm")
            assert _rel_err(two, spec_ref(x, w, sp)) < 1e-5
            np.testing.assert_allclose(one, two, rtol=0, atol=1e-5 * np.abs(one).max())
    finally:
        ndconv.set_num_threads(before)


@pytest.mark.parametrize("xs, pairs, phases", [
    ((1, 3, 224, 224), ((3, 3), (3, 3)), 2),  # the stem layer
    ((2, 3, 9, 11), ((0, 2), (1, 3)), 3),
    ((1, 2, 7), ((2, 0),), 4),  # more phases than padding on the left
    ((1, 1, 4, 5, 6), ((1, 1), (0, 2), (3, 1)), 2),
    ((1, 1, 3, 1), ((0, 0), (2, 2)), 2),  # one column
])
def test_padded_planes_is_pad_then_split(xs, pairs, phases):
    # The one-pass layout against the two passes it replaces (np.pad's zeros,
    # then the split of the last dim into planes).
    x = np.random.default_rng(0).standard_normal(xs).astype(np.float32)
    # (the fields of a CorrSpec that it reads)
    spec = SimpleNamespace(pairs=pairs, padding_mode="zeros", lhs_dilation=(1,) * len(pairs),
                           dtype=np.dtype(np.float32))
    got, plane = gemm._padded_planes(x, spec, phases)
    ref = np.pad(x, [(0, 0), (0, 0), *pairs])
    L = ref.shape[-1]
    want_plane = -(-L // phases)
    ref = np.pad(ref, [(0, 0)] * (ref.ndim - 1) + [(0, want_plane * phases - L)])
    want = np.concatenate([ref[..., ph::phases] for ph in range(phases)], axis=-1)
    assert plane == want_plane
    np.testing.assert_array_equal(got, want)


def test_padded_planes_leaves_other_forms_to_pad():
    x = np.ones((1, 1, 4, 4), np.float32)
    form = dict(pairs=((1, 1), (1, 1)), padding_mode="zeros", lhs_dilation=(1, 1),
                dtype=np.dtype(np.float32))
    assert gemm._padded_planes(x, SimpleNamespace(**form), 2) is not None
    for change in (dict(padding_mode="reflect"), dict(lhs_dilation=(1, 2)),
                   dict(pairs=((1, 1), (-1, 1)))):
        assert gemm._padded_planes(x, SimpleNamespace(**{**form, **change}), 2) is None
    assert gemm._padded_planes(x, SimpleNamespace(**form), 1) is None
