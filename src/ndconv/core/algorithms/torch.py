"""PyTorch's own convolution, ``torch.nn.functional.conv{1,2,3}d``, on torch tensors.

On torch tensors (CPU or CUDA) ``method='auto'`` usually picks this: oneDNN
or cuDNN compute the correlation, and autograd differentiates it. What the
library cannot express (input dilation, cropping, asymmetric or non-zero
padding) is first done by :func:`ndconv.core._windows.pad_portable`, so every
spec with one to three spatial dims and a floating dtype is supported.
"""

from __future__ import annotations

import math

from .._windows import pad_portable


def _is_torch(spec):
    return spec.library == "torch"


def supports(spec):
    if not _is_torch(spec):
        return False, f"needs torch tensors (got {spec.library} arrays)"
    if spec.ndim > 3:
        return False, f"{spec.ndim} spatial dims; torch.nn.functional has conv1d/2d/3d only"
    if spec.dtype.kind != "f":
        return False, f"dtype {spec.dtype} is not floating point (torch's conv)"
    return True, "torch tensors, 1 to 3 spatial dims, floating point"


def _simple_padding(spec):
    """The symmetric zero padding torch's conv takes itself, or None."""
    if spec.padding_mode != "zeros" or any(r != 1 for r in spec.lhs_dilation):
        return None
    if any(lo != hi or lo < 0 for lo, hi in spec.pairs):
        return None
    return tuple(lo for lo, _ in spec.pairs)


def run(x, w, spec):
    import torch.nn.functional as F

    padding = _simple_padding(spec)
    if padding is None:
        x = pad_portable(spec.xp, x, spec.pairs, spec.padding_mode,
                         lhs_dilation=spec.lhs_dilation)
        padding = 0
    conv = (F.conv1d, F.conv2d, F.conv3d)[spec.ndim - 1]
    return conv(x, w, None, spec.stride, padding, spec.dilation, spec.groups)


def estimate(spec):
    """A well-tuned direct/implicit GEMM: the products at the GEMM rate, one
    pass over the input and the output (see :mod:`ndconv.algorithms.cost`)."""
    return native_estimate(spec)


def native_estimate(spec):
    """The estimate shared by the libraries' native convolutions."""
    from .cost import RATES as r, gemm_eff

    it = spec.dtype.itemsize
    g = spec.groups
    k = spec.taps * (spec.in_channels // g)
    moved = it * spec.batch * (spec.in_channels * math.prod(spec.padded_spatial)
                               + spec.out_channels * math.prod(spec.out_spatial))
    return (2 * spec.macs / (r["gemm"] * gemm_eff(k, spec.out_channels // g))
            + 2 * moved / r["copy"] + 10 * r["step"])


def reason(spec):
    return f"torch.nn.functional.conv{spec.ndim}d: the library's own convolution"


from .record import Algorithm  # noqa: E402

ALGORITHM = Algorithm(
    name="torch", supports=supports, run=run, estimate=estimate, reason=reason,
    arrays=("torch",),
)
