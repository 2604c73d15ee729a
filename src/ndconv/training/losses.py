"""Loss functions: calling one returns the loss, ``backward()`` its gradient.

The usual step is::

    loss = loss_fn(model(x), y)       # a float
    model.backward(loss_fn.backward())  # dloss/doutput, then through the layers
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core import _args

if TYPE_CHECKING:
    from ..core._typing import ArrayLike, NDArray

__all__ = ["MSELoss", "CrossEntropyLoss"]

_REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"`reduction` (={reduction!r}) must be one of {_REDUCTIONS}")
    return reduction


class _Loss:
    """Keeps the gradient of the last call for :meth:`backward`."""

    reduction: str
    _grad: NDArray[Any] | None

    def __init__(self, reduction: str = "mean") -> None:
        self.reduction = _check_reduction(reduction)
        self._grad = None

    def __call__(self, input: ArrayLike, target: ArrayLike) -> float:
        return self.forward(input, target)

    def forward(self, input: ArrayLike, target: ArrayLike) -> float:
        """The loss of ``input`` against ``target``; keeps the gradient for :meth:`backward`."""
        raise NotImplementedError

    def backward(self, grad: float = 1.0) -> NDArray[Any]:
        """Gradient of the last loss with respect to ``input``, times ``grad``."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before the loss")
        return self._grad if grad == 1.0 else self._grad * self._grad.dtype.type(grad)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class MSELoss(_Loss):
    """Squared error, ``mean`` or ``sum`` over every element, as ``torch.nn.MSELoss``.

    Parameters
    ----------
    reduction : {'mean', 'sum'}
        ``'sum'`` is the book's "sum of squared errors".

    Notes
    -----
    ``input`` and ``target`` must have the same shape (no broadcasting: a
    ``(B, 1)`` output against a ``(B,)`` target is a common silent bug).
    """

    def forward(self, input: ArrayLike, target: ArrayLike) -> float:
        x = _args.check_array(input, "input")
        t = np.asarray(target)
        if t.shape != x.shape:
            raise ValueError(
                f"MSELoss: `target` shape {t.shape} must equal `input` shape {x.shape}"
            )
        if t.dtype.kind not in "iuf":
            raise TypeError(f"MSELoss: `target` must be numeric, got dtype {t.dtype}")
        diff = x - t.astype(x.dtype, copy=False)
        total = np.sum(np.square(diff, dtype=np.float64))  # no float32 overflow
        scale = 1.0 if self.reduction == "sum" else 1.0 / max(x.size, 1)
        self._grad = diff * x.dtype.type(2 * scale)
        return float(total * scale)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy from logits, as ``torch.nn.CrossEntropyLoss``.

    Parameters
    ----------
    reduction : {'mean', 'sum'}
    label_smoothing : float in [0, 1)

    Notes
    -----
    ``input`` holds logits of shape ``(B, C)`` or ``(B, C, *d)``; ``target``
    holds class indices in ``[0, C)`` of shape ``(B,)`` or ``(B, *d)``, or class
    probabilities of ``input``'s shape. The log-softmax subtracts each row's
    maximum first, so large logits neither overflow nor lose precision. The
    gradient is ``softmax(input) - onehot(target)`` (divided by the number of
    rows for ``'mean'``).
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        if not _args.is_number(label_smoothing) or not 0 <= label_smoothing < 1:
            raise ValueError(f"`label_smoothing` (={label_smoothing!r}) must be in [0, 1)")
        self.label_smoothing = float(label_smoothing)

    def forward(self, input: ArrayLike, target: ArrayLike) -> float:
        x = _args.check_array(input, "input")
        if x.ndim < 2:
            raise ValueError(
                f"CrossEntropyLoss: `input` must be logits of shape (B, C) or (B, C, *d); "
                f"got shape {x.shape}"
            )
        t = np.asarray(target)
        C = x.shape[1]
        # Move classes last: rows of logits (N, C).
        z = np.moveaxis(x, 1, -1).reshape(-1, C)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        probs = t.shape == x.shape and t.dtype.kind == "f"
        if probs:
            q = np.moveaxis(t, 1, -1).reshape(-1, C).astype(x.dtype, copy=False)
        else:
            expected = x.shape[:1] + x.shape[2:]
            if t.shape != expected:
                raise ValueError(
                    f"CrossEntropyLoss: `target` must hold class indices of shape "
                    f"{expected} (or probabilities of shape {x.shape}) for `input` of "
                    f"shape {x.shape}; got shape {t.shape}"
                )
            if t.dtype.kind not in "iu":
                raise TypeError(
                    f"CrossEntropyLoss: class-index `target` must be an int array, got "
                    f"dtype {t.dtype}"
                )
            if t.size and (t.min() < 0 or t.max() >= C):
                bad = t.min() if t.min() < 0 else t.max()
                raise ValueError(
                    f"CrossEntropyLoss: `target` holds label {int(bad)}, outside [0, {C}) "
                    f"for {C} classes"
                )
            q = np.zeros_like(logp)
            q[np.arange(q.shape[0]), t.reshape(-1)] = 1
        if self.label_smoothing:
            q = q * (1 - self.label_smoothing) + self.label_smoothing / C
        # 0 * -inf (a class masked with a -inf logit) counts as 0 for class
        # indices, as PyTorch's nll; probability targets keep q * logp (NaN there too).
        with np.errstate(invalid="ignore"):
            terms = q * logp if probs else np.where(q == 0, 0, q * logp)
        per_row = -terms.sum(axis=1, dtype=np.float64)
        n = per_row.shape[0]
        scale = 1.0 / max(n, 1) if self.reduction == "mean" else 1.0
        g = (np.exp(logp) * q.sum(axis=1, keepdims=True) - q) * x.dtype.type(scale)
        rest = x.shape[2:]
        self._grad = np.moveaxis(g.reshape(x.shape[0], *rest, C), -1, 1)
        return float(per_row.sum() * scale)

    def __repr__(self) -> str:
        s = f"CrossEntropyLoss(reduction={self.reduction!r}"
        return s + (f", label_smoothing={self.label_smoothing})" if self.label_smoothing else ")")
