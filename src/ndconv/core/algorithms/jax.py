"""JAX's own convolution, ``jax.lax.conv_general_dilated``, on JAX arrays.

It takes the whole :class:`~ndconv.algorithms.CorrSpec` natively (any number
of spatial dims, groups, stride, dilation, input dilation, negative padding);
only the non-zero boundary modes are padded first by
:func:`ndconv.core._windows.pad_portable`. ``jax.grad`` differentiates it.
"""

from __future__ import annotations

from .._windows import pad_portable
from .torch import native_estimate


def supports(spec):
    if spec.library != "jax":
        return False, f"needs JAX arrays (got {spec.library} arrays)"
    if spec.dtype.kind != "f":
        return False, f"dtype {spec.dtype} is not floating point (lax's conv)"
    return True, "JAX arrays, floating point, any arguments"


def run(x, w, spec):
    from jax import lax

    pairs, lhs = spec.pairs, spec.lhs_dilation
    if spec.padding_mode != "zeros":
        x = pad_portable(spec.xp, x, pairs, spec.padding_mode)
        pairs = ((0, 0),) * spec.ndim
    return lax.conv_general_dilated(
        x, w, window_strides=spec.stride, padding=pairs, lhs_dilation=lhs,
        rhs_dilation=spec.dilation, feature_group_count=spec.groups,
        precision=lax.Precision.HIGHEST,
    )


def estimate(spec):
    """As torch's native convolution (see :func:`.torch.native_estimate`)."""
    return native_estimate(spec)


def reason(spec):
    return "jax.lax.conv_general_dilated: the library's own convolution"


from .record import Algorithm  # noqa: E402

ALGORITHM = Algorithm(
    name="jax", supports=supports, run=run, estimate=estimate, reason=reason,
    arrays=("jax",),
)
