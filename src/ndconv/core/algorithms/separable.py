"""Separable method: a rank-1 kernel as one 1-D correlation per dim.

Box, Gaussian, Sobel and motion kernels are outer products of 1-D vectors,
``w[o, 0] = u_0 (x) u_1 (x) ... (x) u_{N-1}``; correlating with them is then
correlating with ``u_0`` along dim 0, the result with ``u_1`` along dim 1, and
so on: ``k_0 + k_1 + ...`` multiply-adds per output instead of
``k_0 * k_1 * ...`` (62 instead of 961 for a 31x31 box). Padding, stride,
dilation and input dilation act on each dim alone, and padding along one dim
commutes with filtering along another (a padded column is a copy or a zero
of a column, in every padding mode), so each pass carries its own dim's part
of them. Each pass is a correlation of its own, computed by ``'auto'``.

Whether a kernel is rank 1 depends on its values, not only on the shapes:
the record's ``applies`` checks the arrays (``'auto'`` reads them anyway),
and a forced ``method='separable'`` on another kernel is refused.

The per-output error is that of ``N`` short direct sums over the same
products ``u_0[a] u_1[b] ... x[...]`` as the direct formula's terms (which
the factors reproduce to rounding), so it stays within the direct bound.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: A kernel is rank 1 when the outer product of its factors is within this
#: many epsilons (of its dtype, times its largest magnitude) of it at every
#: tap: the rounding of a product of factors stored in that dtype.
RANK1_EPS = 16


def supports(spec):
    cg = spec.in_channels // spec.groups
    if spec.ndim < 2:
        return False, "a 1-D kernel is already one pass"
    if cg != 1:
        return False, f"{cg} input channels per group; needs 1 (groups == in_channels)"
    if spec.dtype.kind not in "fc":
        return False, f"dtype {spec.dtype} is not floating point (the factors are fractions)"
    if spec.taps <= sum(spec.kernel_size):
        return False, f"kernel {spec.kernel_size}: passes would not take fewer multiply-adds"
    return True, "one input channel per group, a kernel of several dims"


def factors(w, spec):
    """``[u_0, ..., u_{N-1}]``, each ``(O, k_i)``, with ``w[o, 0] = outer(u_i[o])``;
    None when some output channel's kernel is not rank 1.

    A rank-1 tensor is the outer product of its fibres through any nonzero
    tap, divided by that tap ``N-1`` times; through its largest tap, the
    division loses nothing and the fibres carry the kernel's own roundings,
    so a kernel that is rank 1 to rounding passes the test below. No SVD:
    LAPACK on a few taps costs microseconds alone but up to 0.25 s when
    BLAS's threads wait for a busy core (measured: gaussian:8 on a 12 MP
    photo spent most of its time in three SVDs per band).
    """
    O = w.shape[0]
    K = tuple(spec.kernel_size)
    t = np.asarray(w).reshape((O,) + K)
    t = t.astype(np.complex128 if t.dtype.kind == "c" else np.float64)
    if not np.all(np.isfinite(t)):
        return None  # NaN/Inf taps: no factorization
    flat = np.abs(t).reshape(O, -1)
    pivot = np.unravel_index(flat.argmax(axis=1), K)  # N arrays of (O,)
    rows = np.arange(O)[:, None]
    tp = t.reshape(O, -1)[np.arange(O), flat.argmax(axis=1)]
    div = np.where(tp == 0, 1, tp)  # an all-zero kernel: zero fibres, any divisor
    us = []
    for i, k in enumerate(K):
        idx = tuple(np.arange(k)[None, :] if j == i else pivot[j][:, None]
                    for j in range(len(K)))
        fibre = t[(rows, *idx)]  # (O, k)
        us.append(fibre if i == 0 else fibre / div[:, None])
    approx = us[0]
    for u in us[1:]:
        approx = np.einsum("o...,ok->o...k", approx, u)
    eps = np.finfo(spec.dtype).eps
    bound = RANK1_EPS * eps * flat.max(axis=1)
    err = np.abs(approx - t).reshape(O, -1).max(axis=1)
    if np.any(err > bound) or not np.all(np.isfinite(err)):
        return None
    return [u.astype(spec.dtype) for u in us]


def applies(spec, w):
    """None when every output channel's kernel is rank 1, else why not."""
    if factors(w, spec) is None:
        return "the kernel is not rank 1 (not an outer product of 1-D kernels)"
    return None


def passes(spec):
    """The ``N`` correlations, dim 0 first: ``[CorrSpec, ...]``."""
    N = spec.ndim
    out = []
    S, C, g = spec.in_spatial, spec.in_channels, spec.groups
    for i in range(N):
        one = [1] * N

        def at(value, default):
            v = list(default)
            v[i] = value
            return tuple(v)

        p = dataclasses.replace(
            spec, in_channels=C, groups=g, in_spatial=tuple(S),
            kernel_size=at(spec.kernel_size[i], one), stride=at(spec.stride[i], one),
            dilation=at(spec.dilation[i], one), pairs=at(spec.pairs[i], [(0, 0)] * N),
            lhs_dilation=at(spec.lhs_dilation[i], one))
        out.append(p)
        S, C, g = p.out_spatial, spec.out_channels, spec.out_channels
    return out


def run(x, w, spec):
    from . import run as correlate

    us = factors(w, spec)
    if us is None:
        raise ValueError(f"`method`='separable' cannot compute this correlation: "
                         f"{applies(spec, w)}")
    y = x
    for i, (p, u) in enumerate(zip(passes(spec), us)):
        shape = [1] * spec.ndim
        shape[i] = spec.kernel_size[i]
        y = correlate(y, u.reshape(spec.out_channels, 1, *shape), p)
    return y


def _best(p):
    from . import ALGORITHMS

    return min(a.estimate(p) for name, a in ALGORITHMS.items()
               if name != "separable" and a.supports(p)[0])


def estimate(spec):
    """The passes' own best estimates, plus one small SVD per output channel."""
    from .cost import RATES

    return sum(_best(p) for p in passes(spec)) + spec.out_channels * 20 * RATES["step"]


def reason(spec):
    k = " + ".join(str(v) for v in spec.kernel_size)
    return (f"rank-1 kernel: one 1-D pass per dim, {k} multiply-adds per output "
            f"instead of {spec.taps}")


def workspace_bytes(spec):
    """Each pass's input and output (the passes run one after another)."""
    from .record import padded_and_output_bytes

    return max(padded_and_output_bytes(p) for p in passes(spec)) * 2


from .record import Algorithm  # noqa: E402

ALGORITHM = Algorithm(
    name="separable", supports=supports, run=run, estimate=estimate, reason=reason,
    applies=applies, workspace_bytes=workspace_bytes, arrays=("numpy",),
)
