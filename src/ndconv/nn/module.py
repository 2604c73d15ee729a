"""Module, Parameter and Sequential: the PyTorch habits without autograd.

A :class:`Module` computes ``forward(x)`` and keeps what its ``backward`` needs;
``backward(grad_out)`` returns the gradient with respect to the input and adds
the gradients of its parameters into ``Parameter.grad``. Parameter and
submodule names follow PyTorch, so ``state_dict()`` keys match (``"0.weight"``).
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, overload

import numpy as np

if TYPE_CHECKING:
    from typing import Concatenate, ParamSpec, TypeVar

    from typing_extensions import Self

    from ..core._typing import ArrayLike, NDArray, Shape

    _P = ParamSpec("_P")
    _S = TypeVar("_S")
    _M = TypeVar("_M", bound="Module")

__all__ = ["Module", "Parameter", "Sequential"]

# Parameter.accumulate from several threads (one shared model, a batch per
# thread): ``grad += g`` is a read-modify-write that NumPy runs without the GIL.
_accumulate_lock = threading.Lock()
_thread_state = threading.local()


class PerThread:
    """A layer attribute that each thread sees on its own (forward state).

    What ``forward`` keeps for ``backward`` (the input, a mask) lives per
    thread, so a layer shared by threads pairs each thread's ``backward``
    with that thread's last ``forward``, never another's. A thread's values
    go with the thread; copies and pickles of a layer do not carry them.
    """

    name: str

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @staticmethod
    def names(cls: type) -> list[str]:
        """The per-thread attributes of a layer class (its own and inherited)."""
        return [k for c in cls.__mro__ for k, v in vars(c).items() if isinstance(v, PerThread)]

    def _table(self) -> weakref.WeakKeyDictionary[object, dict[str, Any]]:
        table = getattr(_thread_state, "values", None)
        if table is None:
            table = _thread_state.values = weakref.WeakKeyDictionary()
        return table

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> PerThread: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> Any: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        values = self._table().get(obj)
        return None if values is None else values.get(self.name)

    def __set__(self, obj: object, value: Any) -> None:
        table = self._table()
        values = table.get(obj)
        if values is None:
            values = table[obj] = {}
        values[self.name] = value


_ML_FLOATS = ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")


class Parameter:
    """A learnable array: ``.data`` (ndarray) and ``.grad`` (ndarray or None).

    Parameters
    ----------
    data : array_like
        Wrapped as a float ndarray (float16, bfloat16, float32 and float64 are kept; other numeric
        input becomes float64).
    """

    __slots__ = ("data", "grad")

    data: NDArray[Any]
    grad: NDArray[Any] | None

    def __init__(self, data: ArrayLike) -> None:
        from ..core._dtypes import real_floats

        arr = np.asarray(data)
        if arr.dtype not in real_floats():
            if arr.dtype.kind not in "iuf":
                raise TypeError(f"`data` must be a real numeric array, got dtype {arr.dtype}")
            arr = arr.astype(np.float64)
        self.data = arr
        self.grad = None

    @property
    def shape(self) -> Shape:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def accumulate(self, g: ArrayLike) -> None:
        """Add ``g`` into ``.grad`` (allocating it on first use); thread-safe."""
        with _accumulate_lock:
            if self.grad is None:
                self.grad = np.array(g, dtype=self.data.dtype, copy=True)
            else:
                self.grad += g

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer.

    Subclasses implement ``forward(x)`` and ``backward(grad_out)``. Attributes
    that are :class:`Parameter` or :class:`Module` instances are registered in
    assignment order, as in PyTorch.

    Threads: what ``forward`` keeps for ``backward`` (``_cache``) is kept per
    thread (:class:`PerThread`), and gradients are accumulated under a lock,
    so one model may run ``forward``/``backward`` in several threads at once,
    each with its own batch (as PyTorch's autograd allows); their parameter
    gradients add up. Changing parameters (``optimizer.step()``) while another
    thread computes is, as in PyTorch, the caller's to synchronise.
    """

    _cache = PerThread()

    # Set in __init__ through object.__setattr__ (not registered as state).
    training: bool
    _parameters: OrderedDict[str, Parameter]  # (assigning None removes the entry)
    _modules: OrderedDict[str, Module]
    _buffers: OrderedDict[str, NDArray[Any] | None]
    _non_persistent_buffers: set[str]

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        per_thread = getattr(type(self), name, None)
        if type(per_thread) is PerThread:  # forward state, set every call: the short way
            per_thread.__set__(self, value)
            return
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before "
                "assigning attributes"
            )
        params, modules = self.__dict__["_parameters"], self.__dict__["_modules"]
        buffers = self.__dict__["_buffers"]
        if name in buffers:
            # Assigning to a registered buffer updates it, as in PyTorch
            # (BatchNorm replaces its running statistics every step).
            if value is not None and not isinstance(value, np.ndarray):
                raise TypeError(
                    f"cannot assign a {type(value).__name__} as buffer {name!r} of "
                    f"{type(self).__name__} (ndarray or None expected)"
                )
            buffers[name] = value
            object.__setattr__(self, name, value)
            return
        if name in params and not (value is None or isinstance(value, Parameter)):
            # An array here would silently drop the parameter from
            # state_dict() and the optimizer; PyTorch refuses too.
            raise TypeError(
                f"cannot assign a {type(value).__name__} as parameter {name!r} of "
                f"{type(self).__name__} (Parameter or None expected); to change its "
                f"values, assign to {name}.data"
            )
        params.pop(name, None)
        modules.pop(name, None)
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            modules[name] = value
        object.__setattr__(self, name, value)

    # -- computation -------------------------------------------------------

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def backward_params(self, grad_out: ArrayLike) -> None:
        """``backward`` for a module whose input needs no gradient: the parameters'
        gradients are accumulated and the input's is not computed where the
        module can skip it (a convolution or linear layer; PyTorch skips it for
        an input without ``requires_grad``). A network's first layer is such a
        module: :meth:`Sequential.backward_params` and :func:`ndconv.train.fit`
        use it. This default computes ``backward`` and drops its result.
        """
        self.backward(grad_out)

    def __call__(self, *args: Any, **kwargs: Any) -> NDArray[Any]:
        return self.forward(*args, **kwargs)

    # -- parameters and state ---------------------------------------------

    def register_buffer(self, name: str, tensor: NDArray[Any] | None,
                        persistent: bool = True) -> None:
        """Add an array that is state but not a parameter, as ``torch.nn.Module``.

        Parameters
        ----------
        name : str
            Attribute name; the ``state_dict`` key is its dotted path.
        tensor : ndarray or None
            ``None`` registers a buffer that ``state_dict`` leaves out until set.
        persistent : bool
            ``False`` keeps the buffer out of ``state_dict`` (and checkpoints).
        """
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"buffer name must be a non-empty str without '.', got {name!r}")
        if name in self._parameters or name in self._modules:
            raise KeyError(f"attribute {name!r} already exists as a parameter or submodule")
        if tensor is not None and not isinstance(tensor, np.ndarray):
            raise TypeError(
                f"cannot assign a {type(tensor).__name__} as buffer {name!r} "
                "(ndarray or None expected)"
            )
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)
        object.__setattr__(self, name, tensor)

    def _named(self, table: str, prefix: str) -> Iterator[tuple[str, Any]]:
        """``(dotted name, value)`` of one registry (parameters or buffers), recursively."""
        for name, v in self.__dict__[table].items():
            if v is not None:
                yield (f"{prefix}.{name}" if prefix else name), v
        for name, m in self._modules.items():
            yield from m._named(table, f"{prefix}.{name}" if prefix else name)

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, NDArray[Any]]]:
        """``(name, ndarray)`` pairs of every buffer (persistent or not) with dotted names."""
        return self._named("_buffers", prefix)

    def buffers(self) -> list[NDArray[Any]]:
        return [b for _, b in self.named_buffers()]

    def _state_items(self, prefix: str = "") -> Iterator[tuple[str, Module, str, bool]]:
        """``(key, owner, attr, is_buffer)`` in PyTorch's state_dict order.

        Per module its parameters, then its persistent buffers, then its
        children, as ``torch.nn.Module._save_to_state_dict``.
        """
        for name, p in self._parameters.items():
            if p is not None:
                yield (f"{prefix}{name}", self, name, False)
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                yield (f"{prefix}{name}", self, name, True)
        for name, m in self._modules.items():
            yield from m._state_items(f"{prefix}{name}.")

    def named_children(self) -> Iterator[tuple[str, Module]]:
        return iter(self._modules.items())

    def children(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(name, Parameter)`` pairs with PyTorch's dotted names."""
        return self._named("_parameters", prefix)

    def parameters(self) -> list[Parameter]:
        # A parameter shared by several layers (tied weights) is listed once,
        # as in PyTorch, so an optimizer updates it once per step.
        unique = {id(p): p for _, p in self.named_parameters()}
        return list(unique.values())

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def state_dict(self) -> OrderedDict[str, NDArray[Any]]:
        """Copies of every parameter's data and persistent buffer, keyed as in PyTorch."""
        return OrderedDict(
            (k, (getattr(m, a) if buf else getattr(m, a).data).copy())
            for k, m, a, buf in self._state_items()
        )

    def load_state_dict(self, state: Mapping[str, ArrayLike], strict: bool = True) -> Self:
        """Copy arrays from ``state`` into the parameters.

        Raises ``KeyError`` naming missing or unexpected keys (``strict``) and
        ``ValueError`` naming a key whose shape differs. Arrays are cast to the
        parameter's (or buffer's) dtype, so a float32 PyTorch state dict loads
        into float64. Persistent buffers (BatchNorm's running statistics) are
        loaded as parameters are.
        """
        own: dict[str, tuple[Module, str, bool]] = {}
        for k, m, a, buf in self._state_items():
            own[k] = (m, a, buf)
        state = dict(state)
        for prefix, m in self.named_modules():
            m._complete_state(state, f"{prefix}." if prefix else "")
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(
                f"state dict does not match {type(self).__name__}: missing keys "
                f"{missing}, unexpected keys {unexpected}"
            )
        checked: list[tuple[Module, str, bool, NDArray[Any]]] = []
        # Everything is checked before anything is copied, so a bad state dict
        # leaves the module unchanged.
        for k, (m, a, buf) in own.items():
            if k not in state:
                continue
            cur = getattr(m, a) if buf else getattr(m, a).data
            v = np.asarray(state[k])
            if v.shape != cur.shape:
                raise ValueError(
                    f"state dict key {k!r} has shape {v.shape}, the "
                    f"{'buffer' if buf else 'parameter'} has shape {cur.shape}"
                )
            # ml_dtypes' bfloat16 / float8 (kind 'V') cast to float like float16.
            if (v.dtype.kind not in "biuf" and v.dtype.name not in _ML_FLOATS
                    and v.dtype != cur.dtype):
                raise TypeError(f"state dict key {k!r} has non-numeric dtype {v.dtype}")
            if v.dtype.kind == "b" and cur.dtype.kind != "b":
                raise TypeError(f"state dict key {k!r} has dtype bool, expected {cur.dtype}")
            checked.append((m, a, buf, np.array(v, dtype=cur.dtype, copy=True)))
        for m, a, buf, v in checked:
            if buf:
                setattr(m, a, v)
            else:
                getattr(m, a).data = v
        return self

    def _complete_state(self, state: dict[str, ArrayLike], prefix: str) -> None:
        """Add to ``state`` the keys an older format of this layer lacks (none here)."""

    def train(self, mode: bool = True) -> Self:
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Self:
        return self.train(False)

    # -- printing ----------------------------------------------------------

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, m in self._modules.items():
                sub = repr(m).replace("\n", "\n  ")
                lines.append(f"  ({name}): {sub}")
            return "\n".join(lines) + "\n)"
        return lines[0] + ")"


class Sequential(Module):
    """Modules applied in order; children are named ``"0"``, ``"1"``, ...

    ``backward`` runs the children's ``backward`` in reverse order.
    """

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential item {i} must be a Module, got {type(layer).__name__}")
            setattr(self, str(i), layer)

    def __len__(self) -> int:
        return len(self._modules)

    @overload
    def __getitem__(self, i: int) -> Module: ...
    @overload
    def __getitem__(self, i: slice) -> Sequential: ...

    def __getitem__(self, i: int | slice) -> Module:
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*mods[i])
        return mods[i]

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, layer: Module) -> Self:
        if not isinstance(layer, Module):
            raise TypeError(
                f"Sequential item {len(self)} must be a Module, got {type(layer).__name__}"
            )
        setattr(self, str(len(self)), layer)
        return self

    def forward(self, x: ArrayLike) -> NDArray[Any]:
        h: Any = x  # each layer's output (the input itself when there are no layers)
        for name, layer in self._modules.items():
            try:
                h = layer(h)
            except ValueError as exc:
                shape = getattr(h, "shape", None)
                raise ValueError(f"layer {name} ({type(layer).__name__}) got input of shape {shape}: {exc}") from exc
        return h

    def backward(self, grad_out: ArrayLike) -> NDArray[Any]:
        g: Any = grad_out
        for layer in reversed(self._modules.values()):
            g = layer.backward(g)
        return g

    def backward_params(self, grad_out: ArrayLike) -> None:
        """The parameters' gradients only (see :meth:`Module.backward_params`).

        Layers before the first one with parameters get no gradient at all,
        and that one computes none for its input.
        """
        layers = list(self._modules.values())
        first = next((i for i, m in enumerate(layers) if m.parameters()), len(layers))
        g: Any = grad_out
        for layer in reversed(layers[first + 1:]):
            g = layer.backward(g)
        if first < len(layers):
            layers[first].backward_params(g)


def fixed_ndim(base: type[_M], n: int) -> type[_M]:
    """Subclass of ``base`` with ``num_spatial_dims`` fixed to ``n`` (``Conv`` -> ``Conv2d``).

    One N-d implementation, thin names per dimension, as Equinox does.
    """

    def __init__(self: _M, *args: Any, **kwargs: Any) -> None:
        # (type[_M] knows only Module's __init__; base's takes num_spatial_dims first.)
        base.__init__(self, n, *args, **kwargs)  # type: ignore[call-arg]

    # The base's real signature without ``num_spatial_dims``, so that help(),
    # inspect.signature and tab completion show ``Conv2d(in_channels, ...)``
    # rather than ``(*args, **kwargs)``.
    sig = inspect.signature(base.__init__)
    self_param, _, *rest = sig.parameters.values()
    __init__.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[self_param, *rest])
    name = f"{base.__name__}{n}d"
    doc = f"{n}-D :class:`{base.__name__}`; arguments as ``torch.nn.{name}``."
    return type(name, (base,), {"__init__": __init__, "__doc__": doc,
                                "__module__": base.__module__})


if TYPE_CHECKING:
    def without_ndim(
        init: Callable[Concatenate[_S, int, _P], None],
    ) -> Callable[[Callable[..., None]], Callable[Concatenate[_S, _P], None]]:
        """How a type checker reads :func:`fixed_ndim`'s ``__init__``: the base's, less ``num_spatial_dims``.

        mypy cannot follow a class made by a call, so each layer module
        declares its 1d/2d/3d classes under ``TYPE_CHECKING``, as subclasses
        of one private base whose ``__init__`` is decorated with
        ``without_ndim(Base.__init__)``; tests/test_typing.py checks that
        every class mypy reads has the parameters ``inspect.signature`` shows.
        """
