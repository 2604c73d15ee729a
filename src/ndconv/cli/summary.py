"""``ndconv summary``: the lecture's accounting of a real network, layer by layer."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import _parse
from ._errors import Unavailable, UsageError

if TYPE_CHECKING:
    import argparse

    from ..core._typing import Shape
    from ..nn.module import Module

HELP = "per-layer output shape, parameters, bytes, FLOPs and receptive field of a model"

EXAMPLES = """\
MODEL is an ONNX file (any graph ndconv.onnx imports), an ndconv checkpoint
(.npz, from ndconv.save or ndconv train) or a PyTorch state dict (.pt/.pth)
of a known architecture (ndconv.models: digits_cnn, faces_cnn). FLOPs count
2 x the multiply-adds of the weights per sample; the receptive field is the
input window one output element depends on, through every path of the graph.

examples:
  ndconv summary resnet18.onnx
  ndconv summary model.onnx --input 3,224,224 --dtype float32,float16
  ndconv summary digits-cnn.npz
"""

# known architectures of state-dict files: name -> (builder, input shape)
ARCHITECTURES = {"digits_cnn": ("digits_cnn", (1, 8, 8)), "faces_cnn": ("faces_cnn", (1, 25, 25))}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="an .onnx file, an ndconv .npz checkpoint or a .pt/.pth state dict")
    p.add_argument("--input", type=_parse.int_tuple, default=None, metavar="C,H,W",
                   help="one sample's shape (default: what the ONNX model declares)")
    p.add_argument("--dtype", default="float32",
                   help="comma-separated dtypes for the bytes columns (default float32)")


def _state_of(obj: object) -> dict[str, Any]:
    """The model's state dict in a checkpoint (``{"model": ...}`` or the dict itself)."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj:
        raise UsageError("the file holds no state dict (a dict of arrays)")
    return obj


def _read_torch(path: str) -> Any:
    """A .pt/.pth file as a dict of NumPy arrays (ndconv's reader, else torch's)."""
    from .. import io

    if hasattr(io, "load_torch"):  # reads torch.save files without torch
        return io.load_torch(path)
    try:
        import torch
    except ImportError:
        raise Unavailable("reading .pt/.pth needs torch (or an ndconv with ndconv.io.load_torch)") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (torch raises many kinds for a bad file)
        raise UsageError(f"{path!r} is not a PyTorch file torch.load reads safely: {exc}") from None

    def conv(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v.detach().cpu().numpy() if hasattr(v, "detach") else v

    return conv(obj)


def _match(state: dict[str, Any], path: str) -> tuple[Module, Shape, str]:
    """The known architecture whose state_dict has these keys and shapes."""
    import numpy as np

    from ..training import models

    for name, (builder, shape) in ARCHITECTURES.items():
        model = getattr(models, builder)()
        own = model.state_dict()
        if set(own) == set(state) and all(np.shape(state[k]) == v.shape for k, v in own.items()):
            model.load_state_dict({k: np.asarray(v) for k, v in state.items()})
            return model, shape, f"ndconv.models.{builder}"
    keys = ", ".join(list(state)[:4])
    raise UsageError(f"the state dict in {path!r} (keys {keys}, ...) matches no known "
                     f"architecture ({', '.join(ARCHITECTURES)}); export the network to ONNX "
                     "(torch.onnx.export) to summarize it")


def load_any(path: str, input_shape: Shape | None = None) -> tuple[Module, Shape, str]:
    """``(model, input shape, description)`` for an ONNX file or a state-dict file."""
    if not os.path.isfile(path):
        raise UsageError(f"model {path!r} does not exist or is not a file")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".npz", ".pt", ".pth"):
        if ext == ".npz":
            from .. import io

            state = _state_of(io.load(path))
        else:
            state = _state_of(_read_torch(path))
        model, shape, what = _match(state, path)
        return model, input_shape or shape, what
    try:
        import ndconv.onnx as nx
    except ImportError as exc:
        raise Unavailable(str(exc)) from None
    net = nx.load(path)
    if input_shape is None:
        decl = net.input_shapes[0] if len(net.input_shapes) == 1 else None
        if decl is None or any(d is None for d in decl[1:]):
            raise UsageError(f"{path!r} does not declare a fixed input size; give --input C,H,W")
        input_shape = tuple(decl[1:])  # type: ignore[arg-type]  # no None: refused above
    return net, input_shape, f"ONNX opset {net.opset}, {len(net.nodes)} nodes"


def run(args: argparse.Namespace) -> None:
    from ..lecture import plan

    shape = args.input
    if shape is not None and not isinstance(shape, tuple):
        shape = (shape,)
    dtypes = _parse.dtype_list(args.dtype)
    model, shape, what = load_any(args.model, shape)
    rows = plan.layer_rows(model, shape)
    t = plan.total(rows)
    print(f"{args.model}: {what}; input {'x'.join(map(str, shape))}; {t.params:,} parameters "
          f"({plan.format_bytes(t.nbytes(dtypes[0]))} as {dtypes[0]}), {t.flops:,} FLOPs per sample")
    print(plan.format_table(rows, dtypes=dtypes, with_total=True))
