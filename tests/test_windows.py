"""ndconv.core._windows: the one home of tap slices and boundary modes, against NumPy and PyTorch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ndconv.core import _args, _windows

NP_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_source_index_is_what_np_pad_copies(mode, n):
    # PyTorch's limits: reflect pads < n, circular <= n; replicate any width.
    width = n - 1 if mode == "reflect" else n if mode == "circular" else 2 * n + 1
    x = np.arange(n) * 10.0
    padded = np.pad(x, (width, width), mode=NP_MODE[mode])
    p = np.arange(-width, n + width)
    index, inside = _windows.source_index(p, n, mode)
    np.testing.assert_array_equal(x[index], padded)
    assert inside.all()
    for i in (-width, -1, n, n + width - 1):  # the scalar form agrees
        assert _windows._source(i, n, mode) == index[i + width]


def test_source_index_zeros_marks_the_padding_and_clips():
    index, inside = _windows.source_index(np.arange(-2, 6), 4, "zeros")
    np.testing.assert_array_equal(inside, [0, 0, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(index, [0, 0, 0, 1, 2, 3, 3, 3])
    with pytest.raises(ValueError, match="boundary mode 'wrap'"):
        _windows.source_index(0, 4, "wrap")


def test_source_index_matches_torch_pad_in_2d():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    for mode, tmode in [("reflect", "reflect"), ("replicate", "replicate"),
                        ("circular", "circular")]:
        ref = torch.nn.functional.pad(x, (2, 3, 1, 2), mode=tmode)[0, 0].numpy()
        rows, _ = _windows.source_index(np.arange(-1, 5), 3, mode)
        cols, _ = _windows.source_index(np.arange(-2, 7), 4, mode)
        np.testing.assert_array_equal(x[0, 0].numpy()[np.ix_(rows, cols)], ref)


@pytest.mark.parametrize("stride, dilation", [((1, 1), (1, 1)), ((2, 3), (1, 2)), ((3, 1), (2, 1))])
def test_tap_slices_read_what_the_window_view_holds(stride, dilation):
    rng = np.random.default_rng(0)
    xp = rng.standard_normal((2, 3, 11, 13))
    k = (3, 2)
    out = _args.output_size(xp.shape[2:], k, stride, ((0, 0), (0, 0)), dilation)
    win = _windows.windows(xp, k, stride, dilation)  # (B, C, *out, *k)
    assert win.shape == (2, 3, *out, *k)
    for tap in itertools.product(*map(range, k)):
        sl = _windows.tap_slices(tap, stride, dilation, out)
        np.testing.assert_array_equal(xp[(Ellipsis, *sl)], win[(Ellipsis, *tap)])
        # and by the definition: output p reads p*stride + tap*dilation
        p = (out[0] - 1, out[1] - 1)
        src = tuple(pi * s + t * d for pi, s, t, d in zip(p, stride, tap, dilation))
        assert xp[(0, 0, *src)] == xp[(Ellipsis, *sl)][(0, 0, *p)]


def test_transposed_output_size_is_torchs():
    for S, k, s, p, op, d in [(5, 3, 2, 1, 1, 1), (4, 2, 3, 0, 2, 1), (7, 3, 1, 2, 0, 2)]:
        layer = torch.nn.ConvTranspose1d(1, 1, k, stride=s, padding=p, output_padding=op,
                                         dilation=d)
        want = layer(torch.zeros(1, 1, S)).shape[-1]
        assert _args.transposed_output_size((S,), (k,), (s,), (p,), (op,), (d,)) == (want,)
    with pytest.raises(ValueError, match=r"spatial dim 0: .* = \(1-1\)\*1 - 2\*2"):
        _args.transposed_output_size((1,), (3,), (1,), (2,), (0,), (1,))


def _reference_pad(x, pairs, value, r):
    """Zero-dilate by ``r`` then pad (negative: crop) with ``value``, by hand."""
    n = len(pairs)
    lead = x.ndim - n
    dil = np.full(x.shape[:lead] + tuple((s - 1) * ri + 1 for s, ri in zip(x.shape[lead:], r)),
                  value, x.dtype)
    dil[(Ellipsis, *[slice(None, None, ri) for ri in r])] = x
    grow = [(0, 0)] * lead + [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]
    out = np.pad(dil, grow, constant_values=value)
    crop = [slice(None)] * lead + [slice(max(-lo, 0), s - max(-hi, 0))
                                   for (lo, hi), s in zip(pairs, out.shape[lead:])]
    return out[tuple(crop)]


@pytest.mark.parametrize("pairs,r", [
    (((3, 5),), (1,)), (((0, 0), (2, 1)), (1, 1)), (((1, 2), (0, 3), (2, 0)), (1, 1, 1)),
    (((-1, 2), (2, -2)), (1, 1)), (((2, 1), (1, 1)), (2, 3)), (((0, 0),), (1,)),
])
@pytest.mark.parametrize("value", [0.0, -np.inf, 7.5])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pad_fills_every_border_element(pairs, r, value, channels_last):
    # The border is written on its own (no full fill first): stale memory
    # from np.empty must never show, whatever the dims, crops and dilations.
    rng = np.random.default_rng(len(pairs))
    shape = (2, 3) + tuple(5 + i for i in range(len(pairs)))
    for _ in range(3):  # fresh allocations land on memory other arrays just freed
        junk = np.full(4096, np.nan)
        del junk
        x = rng.standard_normal(shape)
        got = _windows.pad(x, pairs, lhs_dilation=r, value=value, channels_last=channels_last)
        want = _reference_pad(x, pairs, value, r)
        if channels_last:
            want = np.moveaxis(want, 1, -1)
        np.testing.assert_array_equal(got, want)
