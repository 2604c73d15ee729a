"""ndconv.derive: the lecture's derivation, both ways, against independent references."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ndconv
from ndconv import derive as D
from ndconv import plan
from reference import conv_ref


def _reindex_loops(w):
    """v[i, a + R] = w[i, i + a], written as the lecture's formula with loops (2-D)."""
    Ho, Wo, H, W = w.shape
    R = (max(Ho, H) - 1, max(Wo, W) - 1)
    v = np.zeros((Ho, Wo, 2 * R[0] + 1, 2 * R[1] + 1))
    for i, j, a, b in itertools.product(range(Ho), range(Wo), range(-R[0], R[0] + 1),
                                        range(-R[1], R[1] + 1)):
        if 0 <= i + a < H and 0 <= j + b < W:
            v[i, j, a + R[0], b + R[1]] = w[i, j, i + a, j + b]
    return v


def _dense_loops(weight, S, stride, pad, dilation):
    """W[o, p, c, q] of a 1-channel-group convolution, by loops over every entry (1-D)."""
    O, C, K = weight.shape
    So = (S + 2 * pad - dilation * (K - 1) - 1) // stride + 1
    W = np.zeros((O, So, C, S))
    for o, p, c, t in itertools.product(range(O), range(So), range(C), range(K)):
        q = p * stride + t * dilation - pad
        if 0 <= q < S:
            W[o, p, c, q] += weight[o, c, t]
    return W


# --------------------------------------------------------------------------
# reindex


def test_reindex_matches_the_lecture_formula(rng):
    for shape in [(4, 5, 4, 5), (3, 2, 5, 4), (5, 4, 2, 3)]:
        w = rng.standard_normal(shape)
        v = D.reindex(w)
        np.testing.assert_array_equal(v, _reindex_loops(w))


def test_reindex_1d_by_hand():
    w = np.arange(9.0).reshape(3, 3)
    np.testing.assert_array_equal(
        D.reindex(w), [[0, 0, 0, 1, 2], [0, 3, 4, 5, 0], [6, 7, 8, 0, 0]])


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("channels", [False, True])
def test_reindex_round_trip(rng, n, channels):
    S_out, S = (4, 3, 2)[:n], (3, 4, 2)[:n]
    shape = (*S_out, *S) if not channels else (2, *S_out, 3, *S)
    w = rng.standard_normal(shape)
    v = D.reindex(w, channels=channels)
    back = D.unreindex(v, S, channels=channels)
    np.testing.assert_array_equal(back, w)
    np.testing.assert_array_equal(D.reindex(back, channels=channels), v)


def test_unreindex_needs_input_size_when_output_is_larger(rng):
    w = rng.standard_normal((5, 3))  # S_out = 5 > S = 3
    v = D.reindex(w)
    # Without it, the input is taken as R + 1 = 5 wide: the same map on a
    # zero-extended input.
    wide = D.unreindex(v)
    np.testing.assert_array_equal(wide[:, :3], w)
    assert wide.shape == (5, 5) and not wide[:, 3:].any()
    np.testing.assert_array_equal(D.unreindex(v, (3,)), w)
    with pytest.raises(ValueError, match="input_size"):
        D.unreindex(v, (7,))


# --------------------------------------------------------------------------
# the lecture's chain: dense -> reindex -> tie -> localize -> kernel


@pytest.mark.parametrize("n", [1, 2, 3])
def test_tie_and_localize_recover_the_kernel(rng, n):
    S = (7, 6, 5)[:n]
    k = rng.standard_normal((3,) * n)
    # A 'same' correlation with kernel k written as a dense layer.
    W = D.conv_to_dense(k[None, None], (1, *S), padding=1)
    W = W.reshape(W.shape[1 : n + 1] + W.shape[n + 2 :])
    v = D.reindex(W)
    kernel = D.tie(v)
    assert kernel.shape == tuple(2 * s - 1 for s in S)
    local = D.localize(kernel, 1)
    np.testing.assert_array_equal(local, k)
    x = rng.standard_normal(S)
    np.testing.assert_allclose(ndconv.correlate(x, local, mode="same"),
                               np.tensordot(W, x, axes=n), rtol=1e-12, atol=1e-12)
    # A wider window only adds zeros.
    wide = D.localize(kernel, 2)
    np.testing.assert_array_equal(wide[(slice(1, 4),) * n], k)
    assert np.count_nonzero(wide) == np.count_nonzero(k)


def test_tie_names_the_position_that_breaks_translation_invariance(rng):
    k = rng.standard_normal((3, 3))
    W = D.conv_to_dense(k[None, None], (1, 5, 6), padding=1)[0, :, :, 0]
    W[3, 2, 4, 1] += 0.5  # output (3, 2) reads input (4, 1): offset (1, -1)
    with pytest.raises(D.PrincipleError, match="translation invariance") as exc:
        D.tie(D.reindex(W))
    e = exc.value
    assert e.principle == D.TRANSLATION_INVARIANCE
    R = (4, 5)
    assert e.index == (3, 2, 1 + R[0], -1 + R[1])
    assert e.value == pytest.approx(k[2, 0] + 0.5)
    assert isinstance(e, ValueError)
    # Within a tolerance larger than the change, the weight counts as tied.
    assert D.tie(D.reindex(W), atol=0.6).shape == (9, 11)


def test_localize_names_the_offset_that_breaks_locality(rng):
    kernel = np.zeros((7, 7))
    kernel[2:5, 2:5] = rng.standard_normal((3, 3))
    kernel[6, 3] = 0.25  # offset (3, 0)
    with pytest.raises(D.PrincipleError, match=r"locality.*a=\(3, 0\)") as exc:
        D.localize(kernel, 1)
    assert exc.value.principle == D.LOCALITY
    assert exc.value.index == (6, 3)
    assert exc.value.value == 0.25
    assert D.localize(kernel, (3, 1)).shape == (7, 3)
    assert D.localize(kernel, (3, 1), atol=0).shape == (7, 3)


def test_delta_zero_gives_a_per_pixel_layer(rng):
    """Delta = 0 leaves one (C_out, C_in) matrix used at every pixel: a 1x1 convolution."""
    import torch

    M = rng.standard_normal((4, 3))
    S = (5, 6)
    # Dense weight of a per-pixel map: W[o, i, j, c, k, l] = M[o, c] [i == k][j == l].
    eye = np.einsum("ik,jl->ijkl", np.eye(S[0]), np.eye(S[1]))
    W = np.einsum("oc,ijkl->oijckl", M, eye)
    k = D.localize(D.tie(D.reindex(W, channels=True), channels=True), 0, channels=True)
    assert k.shape == (4, 3, 1, 1)
    np.testing.assert_array_equal(k[:, :, 0, 0], M)
    x = rng.standard_normal((2, 3, *S))
    y_conv = ndconv.conv(x, k)
    # ... which is a Linear layer over the channel axis (channels last).
    y_linear = torch.nn.functional.linear(torch.tensor(np.moveaxis(x, 1, -1)),
                                          torch.tensor(M)).numpy()
    np.testing.assert_allclose(y_conv, np.moveaxis(y_linear, -1, 1), rtol=1e-12, atol=1e-12)
    y_dense = np.stack([np.tensordot(W, xi, axes=3) for xi in x])
    np.testing.assert_allclose(y_conv, y_dense, rtol=1e-12, atol=1e-12)
    # Add the right-hand neighbour (offset (0, 1)) at every pixel: still tied,
    # no longer per-pixel, and Delta = 0 names that offset.
    right = np.einsum("ik,jl->ijkl", np.eye(S[0]), np.eye(S[1], k=1))
    W2 = W + np.einsum("oc,ijkl->oijckl", np.ones((4, 3)), right)
    kernel = D.tie(D.reindex(W2, channels=True), channels=True)
    with pytest.raises(D.PrincipleError, match=r"locality.*a=\(0, 1\)"):
        D.localize(kernel, 0, channels=True)
    assert D.localize(kernel, 1, channels=True)[0, 0, 1, 2] == 1.0


def test_one_by_one_conv_is_linear_over_channels(rng):
    from ndconv import nn

    x = rng.standard_normal((2, 3, 4, 5, 2))
    lin = nn.Linear(3, 6, dtype=np.float64, rng=1)
    conv = nn.Conv3d(3, 6, 1, dtype=np.float64, rng=2)
    conv.load_state_dict({"weight": lin.weight.data[:, :, None, None, None],
                          "bias": lin.bias.data})
    y_lin = np.moveaxis(lin(np.moveaxis(x, 1, -1)), -1, 1)
    np.testing.assert_allclose(conv(x), y_lin, rtol=1e-12, atol=1e-12)
    # Independent: the matrix product written with einsum.
    ref = np.einsum("oc,bcxyz->boxyz", lin.weight.data, x) + lin.bias.data[:, None, None, None]
    np.testing.assert_allclose(conv(x), ref, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# conv <-> dense with channels, stride, padding, dilation, groups


def _torch_conv(x, w, stride, pairs, dilation, groups, mode):
    import torch
    import torch.nn.functional as F

    flat = [v for lo, hi in reversed(pairs) for v in (lo, hi)]
    xt = F.pad(torch.tensor(x[None]), flat, mode="constant" if mode == "zeros" else mode)
    fn = getattr(F, f"conv{w.ndim - 2}d")
    return fn(xt, torch.tensor(w), None, stride, 0, dilation, groups)[0].numpy()


CASES = [
    # (n, C_in, C_out, K, S, stride, padding, dilation, groups, padding_mode)
    (1, 1, 1, (3,), (7,), 1, 0, 1, 1, "zeros"),
    (1, 3, 2, (3,), (9,), 2, 1, 1, 1, "zeros"),
    (1, 2, 4, (2,), (8,), 1, ((2, 1),), 3, 2, "zeros"),
    (1, 2, 3, (3,), (6,), 1, 1, 1, 1, "circular"),
    (2, 2, 3, (3, 2), (6, 5), (2, 1), (1, 0), (1, 2), 1, "zeros"),
    (2, 4, 2, (3, 3), (5, 6), 1, "same", 1, 2, "zeros"),
    (2, 1, 2, (3, 3), (5, 5), 2, 1, 1, 1, "circular"),
    (3, 2, 2, (2, 3, 2), (4, 5, 4), (1, 2, 1), 1, (2, 1, 1), 1, "zeros"),
    (3, 1, 1, (3, 3, 3), (5, 4, 4), 1, 0, 1, 1, "zeros"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}d-s{c[5]}-p{c[6]}-d{c[7]}-g{c[8]}-{c[9]}")
def test_conv_to_dense_equals_conv(rng, case):
    n, C, O, K, S, stride, padding, dilation, groups, mode = case
    w = rng.standard_normal((O, C // groups, *K))
    x = rng.standard_normal((C, *S))
    W = D.conv_to_dense(w, (C, *S), stride, padding, dilation, groups, mode)
    y = np.tensordot(W, x, axes=x.ndim)
    np.testing.assert_allclose(y, ndconv.conv(x, w, None, stride, padding, dilation, groups, mode),
                               rtol=1e-12, atol=1e-12)
    # The same against PyTorch (pairs resolved as ndconv does).
    from ndconv.core import _args
    pairs = _args.padding_pairs(padding, K, _args.ntuple(dilation, n, "d"),
                                _args.ntuple(stride, n, "s"))
    ref = _torch_conv(x, w, stride, pairs, dilation, groups, mode)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    # And back: the kernel (block-diagonal over groups).
    k = D.dense_to_conv(W, K, stride, padding, dilation, mode)
    full = np.zeros((O, C, *K))
    Og, Cg = O // groups, C // groups
    for g in range(groups):
        full[g * Og:(g + 1) * Og, g * Cg:(g + 1) * Cg] = w[g * Og:(g + 1) * Og]
    if mode == "zeros":
        np.testing.assert_array_equal(k, full)
    else:  # taps that wrap onto the same input add up in W: compare the maps
        np.testing.assert_allclose(D.conv_to_dense(k, (C, *S), stride, padding, dilation, 1, mode),
                                   W, rtol=1e-12, atol=1e-12)


def test_conv_to_dense_matches_entry_by_entry_loops(rng):
    for stride, pad, dil in [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 0, 2)]:
        w = rng.standard_normal((2, 3, 3))
        np.testing.assert_array_equal(D.conv_to_dense(w, (3, 10), stride, pad, dil),
                                      _dense_loops(w, 10, stride, pad, dil))


def test_dense_of_2d_conv_is_doubly_block_toeplitz(rng):
    k = rng.standard_normal((3, 2))
    W = D.conv_to_dense(k[None, None], (1, 5, 4))[0, :, :, 0]  # (i, j, k, l) = (3, 3, 5, 4)
    for i, kk in itertools.product(range(3), range(5)):
        block = W[i, :, kk, :]  # (j, l)
        if 0 <= kk - i < 3:
            # Block (i, k) depends on k - i only, and is itself Toeplitz in (j, l).
            np.testing.assert_array_equal(block, W[0, :, kk - i, :])
            for j, l in itertools.product(range(3), range(4)):
                expected = k[kk - i, l - j] if 0 <= l - j < 2 else 0.0
                assert block[j, l] == expected
        else:
            assert not block.any()


def test_lecture_worked_example_as_a_dense_layer():
    x = np.arange(9.0).reshape(1, 3, 3)
    k = np.array([[[[0.0, 1.0], [2.0, 3.0]]]])
    W = D.conv_to_dense(k, (1, 3, 3))
    np.testing.assert_array_equal(np.tensordot(W, x, axes=3), [[[19, 25], [37, 43]]])
    assert W.shape == (1, 2, 2, 1, 3, 3)


@given(
    n=st.integers(1, 3),
    C=st.integers(1, 2), O=st.integers(1, 2),
    k=st.integers(1, 3), s=st.integers(1, 3), d=st.integers(1, 2), p=st.integers(0, 2),
    extra=st.integers(0, 3), seed=st.integers(0, 1000),
)
def test_dense_round_trip_hypothesis(n, C, O, k, s, d, p, extra, seed):
    r = np.random.default_rng(seed)
    S = tuple(d * (k - 1) + 1 + extra + i for i in range(n))
    w = r.integers(-3, 4, (O, C, *(k,) * n)).astype(np.float64)
    x = r.integers(-3, 4, (C, *S)).astype(np.float64)
    W = D.conv_to_dense(w, (C, *S), s, p, d)
    # Small integers: every sum is exact, so equality is exact.
    np.testing.assert_array_equal(np.tensordot(W, x, axes=x.ndim),
                                  conv_ref(x[None], w, None, s, p, d)[0])
    back = D.dense_to_conv(W, (k,) * n, s, p, d)
    # Taps that only ever read padding are not recoverable (they multiply zeros).
    np.testing.assert_array_equal(D.conv_to_dense(back, (C, *S), s, p, d), W)
    L = D.dense_to_local(W, (k,) * n, s, p, d)
    np.testing.assert_array_equal(D.local_to_dense(L, (C, *S), s, p, d), W)


# --------------------------------------------------------------------------
# local <-> dense, and the errors of dense_to_conv


def test_local_round_trip_and_locality_error(rng):
    L = rng.standard_normal((2, 4, 3, 3, 3, 2))  # (O, *S_out, C, *K), 2-D
    W = D.local_to_dense(L, (3, 8, 4), stride=(2, 1), padding=(1, 0), dilation=1)
    np.testing.assert_array_equal(D.dense_to_local(W, (3, 2), (2, 1), (1, 0)), _keep_valid(L, W))
    x = rng.standard_normal((3, 8, 4))
    # h[o, p] = sum_{c,t} L[o, p, c, t] xpad[c, p*s + t]
    xp = np.pad(x, ((0, 0), (1, 1), (0, 0)))
    ref = np.zeros((2, 4, 3))
    for o, p0, p1 in itertools.product(range(2), range(4), range(3)):
        ref[o, p0, p1] = np.sum(L[o, p0, p1] * xp[:, 2 * p0 : 2 * p0 + 3, p1 : p1 + 2])
    np.testing.assert_allclose(np.tensordot(W, x, axes=3), ref, rtol=1e-12, atol=1e-12)
    W[1, 0, 0, 2, 7, 3] = 1.5
    with pytest.raises(D.PrincipleError, match="locality") as exc:
        D.dense_to_local(W, (3, 2), (2, 1), (1, 0))
    assert exc.value.index == (1, 0, 0, 2, 7, 3) and exc.value.value == 1.5


def _keep_valid(L, W):
    """L with taps that read padding zeroed (they are not part of W)."""
    out = L.copy()
    out[:, 0, :, :, 0, :] = 0  # output row 0, tap row 0 reads padded row -1
    return out


def test_circular_taps_wrapping_onto_one_input_cannot_be_split():
    # Kernel [1, 2, 4] on 2 inputs, circular 'same': taps 0 and 2 read the same
    # input, so W holds 1 + 4 = 5 there (checked by hand) and no tap is recoverable.
    w = np.array([[[1.0, 2.0, 4.0]]])
    W = D.conv_to_dense(w, (1, 2), padding="same", padding_mode="circular")
    np.testing.assert_array_equal(W[0, :, 0, :], [[2.0, 5.0], [5.0, 2.0]])
    for f in (D.dense_to_conv, D.dense_to_local):
        with pytest.raises(ValueError, match="same input position"):
            f(W, 3, padding="same", padding_mode="circular")


def test_dense_to_conv_rejects_a_fully_connected_weight(rng):
    from ndconv import nn

    fc = nn.FullyConnected((1, 5, 5), (1, 3, 3), dtype=np.float64, rng=0)
    with pytest.raises(D.PrincipleError, match="locality"):
        D.dense_to_conv(fc.weight.data, 3)
    # Local but untied: translation invariance, naming the entry.
    L = rng.standard_normal((1, 3, 3, 1, 3, 3))
    W = D.local_to_dense(L, (1, 5, 5))
    with pytest.raises(D.PrincipleError, match="translation invariance") as exc:
        D.dense_to_conv(W, 3)
    assert exc.value.principle == D.TRANSLATION_INVARIANCE
    o, p0, p1, c, q0, q1 = exc.value.index
    assert W[exc.value.index] == exc.value.value
    assert (q0 - p0, q1 - p1) in itertools.product(range(3), range(3))


def test_fully_connected_with_tied_local_weight_is_exactly_the_conv(rng):
    from ndconv import nn

    conv = nn.Conv2d(2, 3, 3, padding=1, stride=1, dtype=np.float64, rng=0)
    # Small integers make every sum exact in float64: equality, not closeness.
    conv.weight.data = rng.integers(-3, 4, conv.weight.shape).astype(np.float64)
    conv.bias.data = rng.integers(-3, 4, conv.bias.shape).astype(np.float64)
    x = rng.integers(-3, 4, (4, 2, 6, 5)).astype(np.float64)
    fc = nn.FullyConnected((2, 6, 5), (3, 6, 5), dtype=np.float64, rng=0)
    fc.weight.data = D.conv_to_dense(conv.weight.data, (2, 6, 5), padding=1)
    fc.bias.data = np.broadcast_to(conv.bias.data[:, None, None], (3, 6, 5)).copy()
    np.testing.assert_array_equal(fc(x), conv(x))
    np.testing.assert_array_equal(D.dense_to_conv(fc.weight.data, 3, padding=1), conv.weight.data)


# --------------------------------------------------------------------------
# bad input and the memory guard


@pytest.mark.parametrize("call, match", [
    (lambda: D.reindex(np.ones((2, 3, 4))), "same number of dims"),
    (lambda: D.reindex(np.ones((2, 3, 4)), channels=True), "same number of dims"),
    (lambda: D.tie(np.ones((3, 4))), "odd length"),
    (lambda: D.localize(np.ones((4, 5)), 1), "odd spatial sizes"),
    (lambda: D.localize(np.ones((3, 5)), -1), "delta"),
    (lambda: D.conv_to_dense(np.ones((1, 1, 3)), (2, 5)), "C_in = 1"),
    (lambda: D.conv_to_dense(np.ones((1, 1, 3)), (1, 2)), "larger than the padded input"),
    (lambda: D.conv_to_dense(np.ones((1, 1, 3)), (1, 5), padding_mode="reflect"), "padding_mode"),
    (lambda: D.conv_to_dense(np.ones((2, 1, 3)), (3, 5), groups=3), "divisible"),
    (lambda: D.dense_to_conv(np.ones((1, 4, 1, 5)), 3), r"S_out = .* = \(3,\)"),
    (lambda: D.dense_to_conv(np.ones((1, 4, 1, 5)), (3, 3)), "ndim 6"),
    (lambda: D.local_to_dense(np.ones((1, 4, 1, 3)), (1, 5)), r"\(3,\)"),
    (lambda: D.reindex("abc"), "numeric"),
])
def test_bad_arguments(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_guard_refuses_a_huge_dense_weight_before_allocating():
    tracemalloc.start()
    try:
        # A 3x3 conv from the lecture's photo to 5 channels: W has
        # 5 * 12e6 * 3 * 12e6 float32 entries.
        with pytest.raises(plan.MemoryLimitError, match=r"8,640,000,000,000,000 bytes") as exc:
            D.conv_to_dense(np.ones((5, 3, 3, 3), dtype=np.float32), (3, 3000, 4000), padding=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(exc.value, MemoryError)
    assert peak < 50_000_000  # index arrays only, never the weight
    with plan.memory_limit(1000):
        with pytest.raises(plan.MemoryLimitError, match="1 kB"):
            D.reindex(np.ones((6, 6, 6, 6)))


@given(
    K=st.lists(st.integers(-1, 4), min_size=1, max_size=3),
    S=st.lists(st.integers(-1, 6), min_size=1, max_size=3),
    stride=st.integers(-1, 3), padding=st.one_of(st.integers(-1, 3), st.sampled_from(["same", "valid", "full", "x"])),
    dilation=st.integers(-1, 3), mode=st.sampled_from(["zeros", "circular", "reflect"]),
)
def test_random_arguments_raise_clearly_or_are_right(K, S, stride, padding, dilation, mode):
    """Never a crash: a clear ValueError/TypeError, or the right dense weight."""
    try:
        w = np.ones((1, 1, *[max(k, 0) for k in K]))
        W = D.conv_to_dense(w, (1, *S), stride, padding, dilation, 1, mode)
    except (ValueError, TypeError) as e:
        assert str(e)
        return
    x = np.arange(float(np.prod(S))).reshape(1, *S)
    np.testing.assert_allclose(np.tensordot(W, x, axes=x.ndim),
                               ndconv.conv(x, w, None, stride, padding, dilation, 1, mode),
                               rtol=1e-12, atol=1e-9)
