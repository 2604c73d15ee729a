"""``ndconv run``: classify images with an ONNX network, NumPy only."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import _parse
from ._errors import Unavailable, UsageError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from ..core._typing import DTypeLike, NDArray

HELP = "run an ONNX image classifier on images and print the top-k classes"

EXAMPLES = """\
Each image is read (PNG, JPEG, TIFF), converted to the model's channels (RGB,
or grey for one channel), resized to --size (bilinear; default: the size the
model declares), scaled to 0..1, then normalised per channel:
x = (pixel / 255 - mean) / std. The output's softmax gives the scores.

examples:
  ndconv run resnet18.onnx cat.jpg dog.jpg --size 224,224 \\
      --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --labels imagenet.txt --top 5
  ndconv run digits.onnx digit.png --top 3
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--size", default=None, metavar="H,W", help="resize every image to H,W")
    p.add_argument("--mean", default="0", help="per-channel mean after scaling to 0..1 (default 0)")
    p.add_argument("--std", default="1", help="per-channel std after scaling to 0..1 (default 1)")
    p.add_argument("--labels", default=None, metavar="FILE", help="class names, one per line")
    p.add_argument("--top", type=int, default=5, metavar="K", help="classes to print (default 5)")


def preprocess(path: str, channels: int, size: tuple[int, ...] | None, mean: Sequence[float],
               std: Sequence[float], dtype: DTypeLike) -> NDArray[Any]:
    """One image as a ``(C, H, W)`` array, as the options state."""
    import numpy as np
    from PIL import Image

    from ..images import read_image

    arr = read_image(path)
    if arr.dtype != np.uint8:  # 16-bit or float grey: onto 0..255 like 8-bit
        arr = arr.astype(np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255, 0, 255).astype(np.uint8)
    im = Image.fromarray(arr)
    im = im.convert("L" if channels == 1 else "RGB")
    if size is not None and im.size != (size[1], size[0]):
        # (Pillow exports Resampling's members at module level; its stubs do not say so)
        im = im.resize((size[1], size[0]), Image.BILINEAR)  # type: ignore[attr-defined]
    x = np.asarray(im, dtype=np.float64) / 255.0
    x = x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0)
    if x.shape[0] != channels:
        raise UsageError(f"{path!r} has {x.shape[0]} channels after conversion, the model takes {channels}")
    m = np.asarray(mean, np.float64).reshape(-1, 1, 1)
    s = np.asarray(std, np.float64).reshape(-1, 1, 1)
    return ((x - m) / s).astype(dtype)


def run(args: argparse.Namespace) -> None:
    import numpy as np

    try:
        import ndconv.onnx as nx
    except ImportError as exc:
        raise Unavailable(str(exc)) from None
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise Unavailable("reading images needs Pillow: pip install 'ndconv[cli]'") from None
    if args.top < 1:
        raise UsageError(f"--top {args.top} must be at least 1")
    for path in [args.model, *args.images] + ([args.labels] if args.labels else []):
        if not os.path.isfile(path):
            raise UsageError(f"{path!r} does not exist or is not a file")
    mean, std = _parse.float_list(args.mean, "mean"), _parse.float_list(args.std, "std")
    if any(v <= 0 for v in std):
        raise UsageError(f"--std {args.std!r} must be positive")
    size = None
    if args.size is not None:
        size = tuple(int(v) for v in _parse.float_list(args.size, "size"))
        if len(size) != 2 or min(size) < 1:
            raise UsageError(f"--size {args.size!r} must be two positive ints H,W")
    labels = None
    if args.labels:
        with open(args.labels, encoding="utf-8", errors="replace") as f:
            labels = [line.strip() for line in f if line.strip()]
    net = nx.load(args.model)
    if len(net.input_names) != 1 or len(net.output_names) != 1:
        raise UsageError(f"{args.model!r} has {len(net.input_names)} inputs and "
                         f"{len(net.output_names)} outputs; ndconv run takes one of each")
    decl = net.input_shapes[0]
    if decl is None or len(decl) != 4:
        raise UsageError(f"{args.model!r} takes input of shape {decl}, not images (B, C, H, W)")
    channels = decl[1]
    if channels is None:
        raise UsageError(f"{args.model!r} does not declare its input channels")
    if size is None:
        if decl[2] is None or decl[3] is None:
            raise UsageError(f"{args.model!r} takes any image size; give --size H,W")
        size = (decl[2], decl[3])
    for what, v in (("mean", mean), ("std", std)):
        if len(v) not in (1, channels):
            raise UsageError(f"--{what} has {len(v)} values; the model takes {channels} channels")
    x = np.stack([preprocess(p, channels, size, mean, std, net.input_dtypes[0]) for p in args.images])
    y = np.asarray(net.infer(x))
    if y.ndim != 2:
        y = y.reshape(y.shape[0], -1)
    if labels is not None and len(labels) != y.shape[1]:
        raise UsageError(f"--labels {args.labels!r} has {len(labels)} names, the model has "
                         f"{y.shape[1]} classes")
    z = y.astype(np.float64) - y.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    k = min(args.top, y.shape[1])
    for path, probs in zip(args.images, p):
        print(f"{path}:")
        for rank, c in enumerate(np.argsort(-probs, kind="stable")[:k], 1):
            name = labels[c] if labels else f"class {c}"
            print(f"  {rank}. {name} ({c})  {probs[c]:.4f}")
