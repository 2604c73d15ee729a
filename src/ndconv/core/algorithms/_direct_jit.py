"""Compiled direct correlation (numba): stride-1 layers with few channels per group.

One N-d loop for every number of dims, as in :mod:`._jit`. A slab of the
input (a range of rows along the first spatial dim, the channels of one
group of one batch item) is copied into a small zero-padded buffer; in that
buffer's flat layout every kernel tap is one constant offset, so output
position ``i`` (flat, at the buffer's pitch) is
``sum_c sum_t w[o, c, t] * buf[c, i + off[t]]``: one contiguous multiply-add
per (channel, tap) over all rows of the slab at once (a row of 8 or 28
outputs alone is too short for the vector units), with the buffer and the
accumulator in L1/L2 for all taps and output channels, and zero padding
without a padded copy of the whole input. The positions that fall in the
pitch's padding columns are computed and dropped when the accumulator is
copied out (a few percent more work for 3x3 kernels).

Two shapes of the same sum, by which side is long:

- :func:`correlate` (``forward``) loops over the output positions: the
  forward pass and the input gradient of a layer (few taps, many outputs);
- the weight gradient's correlation has the output gradient as its kernel
  (many taps) and the few kernel taps as its outputs: ``weights`` takes a
  dot product over the taps per output position instead.

Both run on numba's threads over (batch item, group, slab) units, or in one
thread without the pool for small calls (waking it costs more).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from .._windows import pad
from ._jit import FAST_MATH as _FAST
from ._jit import build_once
from .record import add_bias

_KERNELS: dict = {}

#: Bytes of one work unit's buffer and accumulator: a slab is cut to stay in L2.
SLAB_BYTES = 128 * 2**10

#: Largest buffer row (all channels of one padded row of the first dim) the
#: compiled kernels take; beyond it (a long 1-D signal) the other paths run.
ROW_BYTES = 2 * 2**20

#: Largest padded plane the dot shape (which holds one per thread) takes.
PLANE_BYTES = 32 * 2**20

#: Below this many multiply-adds, one thread without the pool. The digits
#: CNN's first layer at batch 64 (1->16 k3 on 8x8, 590k multiply-adds) took
#: 49-50 us on one thread and 28-29 on two (AMD EPYC VM, quiet; torch 40):
#: from 2**18 the second thread pays for its wake-up.
THREAD_MACS = 2**18


def kernels():
    """``(forward, forward_serial, weights, weights_serial)`` compiled, or None."""
    return build_once(_KERNELS, _build)


def _build():
    from ._jit import parallel_and_serial

    from ._direct_kernels import forward as fwd, weights as wts

    opts = dict(fastmath=_FAST, cache=True, nogil=True)
    return parallel_and_serial(fwd, **opts) + parallel_and_serial(wts, **opts)


def _layout(spec):
    """Shapes of ``spec`` with at least two spatial dims (a 1-D signal is one row)
    and the buffer's flat strides: ``(S_in, K, dil, lo, S_out, ext, pitch, in_pitch)``."""
    S_in, K, dil = spec.in_spatial, spec.kernel_size, spec.dilation
    lo = tuple(p for p, _ in spec.pairs)
    S_out, ext = spec.out_spatial, spec.padded_spatial
    if spec.ndim == 1:
        S_in, K, dil, S_out, ext = ((1,) + t for t in (S_in, K, dil, S_out, ext))
        lo = (0,) + lo
    pitch = [1] * len(ext)
    in_pitch = [1] * len(ext)
    for i in range(len(ext) - 2, -1, -1):
        pitch[i] = pitch[i + 1] * ext[i + 1]
        in_pitch[i] = in_pitch[i + 1] * S_in[i + 1]
    return S_in, K, dil, lo, S_out, ext, tuple(pitch), tuple(in_pitch)


def _i64(v):
    return np.array(v, dtype=np.int64)


def eligible(spec, taps_side: bool) -> bool:
    """Whether the compiled kernels take ``spec`` (stride 1 and no input dilation
    for the forward shape, dilation 1 for the dot shape; float32/float64)."""
    if spec.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        return False
    if any(r != 1 for r in spec.lhs_dilation):
        return False
    if taps_side:
        if any(s != 1 for s in spec.stride):
            return False
    elif any(d != 1 for d in spec.dilation):
        return False
    ext = spec.padded_spatial
    if not taps_side:  # each thread holds one whole padded plane
        return math.prod(ext) * spec.dtype.itemsize <= PLANE_BYTES
    row = math.prod(ext[1:]) if spec.ndim > 1 else ext[0]
    return spec.in_channels // spec.groups * row * spec.dtype.itemsize <= ROW_BYTES


@functools.lru_cache(maxsize=512)
def _forward_args(spec, threads):
    """The integer arguments of the taps-shaped kernel for ``spec`` on ``threads``."""
    S_in, K, dil, lo, S_out, ext, pitch, in_pitch = _layout(spec)
    B, g = spec.batch, spec.groups
    cg = spec.in_channels // g
    offs = _i64([sum(t * d * p for t, d, p in zip(tap, dil, pitch)) for tap in np.ndindex(*K)])
    span0 = (K[0] - 1) * dil[0]
    tail = sum((n - 1) * p for n, p in zip(S_out[1:], pitch[1:]))
    row = (cg + 1) * pitch[0] * spec.dtype.itemsize  # buffer and accumulator, per row
    slab = max(1, min(S_out[0], SLAB_BYTES // row))
    nb = 1
    if slab == S_out[0]:  # whole planes fit: stack items, up to the budget
        nb = max(1, min(B, SLAB_BYTES // (row * (S_out[0] + span0))))
        if threads > 1:  # but leave every thread two units
            nb = max(1, min(nb, -(-B * g // (2 * threads))))
    if threads > 1 and g * -(-B // nb) * -(-S_out[0] // slab) < 2 * threads:
        slab = max(1, -(-S_out[0] // -(-2 * threads // (B * g))))
    units = g * -(-B // nb) * -(-S_out[0] // slab)
    return (_i64(S_in), _i64(in_pitch), _i64(S_out), _i64(lo), _i64(ext), _i64(pitch), offs,
            span0, tail, slab, nb, g, min(threads, units))


def forward(x, w, spec, bias=None, threads=1, args=None):
    """The correlation ``spec`` (stride 1, zero padding) of ``x`` with ``w``.

    ``bias`` (O,) is added as the output is written. ``threads``: numba's
    threads to share the units among (1: no pool). ``args``: what
    :func:`_forward_args` gives for them, if known.
    """
    B, C, O = spec.batch, spec.in_channels, spec.out_channels
    if args is None:
        args = _forward_args(spec, threads)
    b = _zeros(O, spec.dtype) if bias is None else np.ascontiguousarray(bias, dtype=spec.dtype)
    out = np.empty(spec.out_shape, spec.dtype)
    fwd = kernels()[0 if threads > 1 else 1]
    fwd(np.ascontiguousarray(x, dtype=spec.dtype).reshape(-1),
        np.ascontiguousarray(w, dtype=spec.dtype).reshape(-1), out.reshape(-1), B, C, O,
        *args[:-2], args[-2], b, spec.dtype.type(0), args[-1])
    return out


@functools.lru_cache(maxsize=64)
def _zeros(n, dtype):
    """A zero bias (the kernel always adds one; only read, never handed out)."""
    return np.zeros(n, dtype)


@functools.lru_cache(maxsize=512)
def _dot_args(spec, threads):
    """The integer arguments of the dot-shaped kernel for ``spec`` on ``threads``."""
    S_in, K, _, lo, S_out, ext, pitch, in_pitch = _layout(spec)
    stride = spec.stride if spec.ndim > 1 else (1,) + tuple(spec.stride)
    poffs = _i64([sum(q * s * p for q, s, p in zip(pos, stride, pitch))
                  for pos in np.ndindex(*S_out)])
    n = max(1, min(threads, spec.batch * spec.in_channels))
    return (_i64(S_in), _i64(in_pitch), _i64(K), _i64(lo), _i64(ext), _i64(pitch), poffs,
            spec.groups, n)


def dot_form(x, k, spec, threads=1):
    """The correlation ``spec`` (dilation 1, zero padding) as one dot product per
    output position: for a large kernel and few outputs (a weight gradient)."""
    Bn, C, O = spec.batch, spec.in_channels, spec.out_channels
    args = _dot_args(spec, threads)
    n = args[-1]
    out = np.empty((n, Bn, O, len(args[6])), spec.dtype)
    wts = kernels()[2 if threads > 1 else 3]
    wts(np.ascontiguousarray(x, dtype=spec.dtype).reshape(-1),
        np.ascontiguousarray(k, dtype=spec.dtype).reshape(-1), out, Bn, C, O, *args[:-1],
        spec.dtype.type(0), args[-1])
    return out.sum(axis=0).reshape(spec.out_shape) if n > 1 else out[0].reshape(spec.out_shape)


class Plan:
    """What :func:`plan` decides for one spec: the kernel's shape and its arguments.

    Attributes
    ----------
    spec : CorrSpec
        The zero-padded correlation the kernel computes (other padding modes
        are padded by :func:`ndconv.core._windows.pad` first).
    dot : bool
        True: the dot-product shape (large kernel, few outputs).
    macs : int
        Multiply-adds the kernel does, the pitch's padding columns included.
    passes : int
        Loops over the accumulator (or dot products): the per-loop cost.
    """

    __slots__ = ("spec", "dot", "macs", "passes", "given", "args")

    def __init__(self, spec, dot, macs, passes, given):
        self.spec, self.dot, self.macs, self.passes = spec, dot, macs, passes
        self.given = given  # the spec asked for, when its padding is done first
        self.args = {}  # {threads: the kernel's integer arguments}


def _costs(spec, dot):
    """``(macs, passes)`` of the taps shape (``dot=False``) or the dot shape."""
    S_in, K, dil, lo, S_out, ext, pitch, _ = _layout(spec)
    B, C, O, g = spec.batch, spec.in_channels, spec.out_channels, spec.groups
    cg = C // g
    T = math.prod(K)
    if dot:
        P = math.prod(S_out)
        return B * C * (O // g) * P * T, B * C * (O // g) * P * math.prod(K[:-1])
    *_, span0, tail, slab, nb, _, _ = _forward_args(spec, 1)
    per, stacks = -(-S_out[0] // slab), -(-B // nb)
    wide = ((nb - 1) * (slab + span0) + slab - 1) * pitch[0] + tail + 1
    units = g * stacks * per
    rows = B * O * math.prod(S_out[:-1])  # output rows copied out (a short loop each)
    return units * (O // g) * cg * T * wide, units * (O // g) * cg * -(-T // 3) + rows // 4


def plan(spec):
    """The compiled kernel's :class:`Plan` for ``spec``, or None where it does not apply.

    It applies to NumPy float32/float64 correlations without input dilation,
    when numba is installed: the taps shape for stride 1, the dot shape for
    dilation 1, whichever does fewer multiply-adds; a padding mode other than
    zeros is padded first.
    """
    from ._jit import numba_installed

    # (_KERNELS["k"] is None once numba failed to import, or where a test says so)
    if not spec.numpy or _KERNELS.get("k", True) is None or not numba_installed():
        return None
    return _plan(spec)


@functools.lru_cache(maxsize=512)
def _plan(spec):
    given = None
    if spec.padding_mode != "zeros":
        given = spec
        spec = dataclasses.replace(spec, in_spatial=spec.padded_spatial,
                                   pairs=((0, 0),) * spec.ndim, padding_mode="zeros")
    shapes = [dot for dot in (False, True) if eligible(spec, taps_side=not dot)]
    if not shapes:
        return None
    costs = {dot: _costs(spec, dot) for dot in shapes}
    dot = min(shapes, key=lambda d: costs[d][0] + 30 * costs[d][1])
    return Plan(spec, dot, *costs[dot], given)


def seconds(p: Plan) -> float:
    """Estimated seconds of a :class:`Plan` (rates of :mod:`.cost`)."""
    from .cost import RATES

    s = p.spec
    nbytes = s.dtype.itemsize * (s.batch * s.in_channels * math.prod(s.in_spatial)
                                 + s.batch * s.out_channels * math.prod(s.out_spatial))
    # (float64: half the values per vector)
    return (p.macs * s.dtype.itemsize / 4 / RATES["jit_mac"] + p.passes * RATES["jit_pass"] + nbytes / RATES["copy"]
            + RATES["jit_call"])


def run(p: Plan, x, w, bias=None):
    """Compute the correlation of :class:`Plan` ``p`` on ``x`` and ``w``, plus
    ``bias`` (C_out,) per output channel if given."""
    from ._jit import set_threads
    from .threads import get_num_threads

    spec = p.spec
    if p.given is not None:
        x = pad(x, p.given.pairs, p.given.padding_mode)
    threads = get_num_threads() if p.macs >= THREAD_MACS else 1
    if threads > 1:
        set_threads(threads)
    if p.dot:
        return add_bias(dot_form(x, w, spec, threads), bias)
    args = p.args.get(threads)
    if args is None:
        args = p.args[threads] = _forward_args(spec, threads)
    return forward(x, w, spec, bias, threads, args)
