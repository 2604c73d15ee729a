"""``ndconv filter IN OUT --kernel NAME|FILE.npy``: filter a photo."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import _io, _parse
from ._errors import UsageError

if TYPE_CHECKING:
    import argparse

    import numpy as np

    from ..core._typing import NDArray

HELP = "filter a PNG, JPEG or TIFF image with a named kernel or a .npy kernel"

EXAMPLES = """\
kernels (NAME or NAME:ARG; cross-correlation, as ndconv.correlate):
  identity, box:K, gaussian, gaussian:SIGMA, sharpen, edge, diff, sobel-x,
  sobel-y, laplacian, emboss, motion:K, or FILE.npy holding (k_h, k_w) (each
  channel alone) or (C_out, C_in, k_h, k_w) (mixing channels, e.g. 3 -> 3).

output range: uint8/uint16 results are rounded and clipped to 0..255 / 0..65535
(--range clip, the default); --range abs takes |y| first (edge magnitude);
--range rescale maps the output's min..max onto the full range.

examples:
  ndconv filter cat.png cat-edges.png --kernel edge --range abs
  ndconv filter cat.jpg blur.jpg --kernel gaussian:2 --mode reflect
  ndconv filter scan.tif half.tif --kernel box:2 --padding valid --stride 2
  ndconv filter cat.png sepia.png --kernel sepia.npy     # shape (3, 3, 1, 1)
  ndconv filter cat.png cat.png --kernel sharpen         # refused: OUT is IN
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="input image (.png, .jpg, .tif)")
    p.add_argument("output", metavar="OUT", help="output image (.png, .jpg, .tif); must not exist unless --force")
    p.add_argument("--kernel", "-k", required=True, metavar="NAME|FILE.npy",
                   help="a named kernel (see below) or a .npy file")
    p.add_argument("--padding", type=_parse.padding, default="same",
                   help="same (default: the output has the input's size), valid, full, "
                        "or ints 'P' / 'PH,PW'")
    p.add_argument("--mode", default="zeros",
                   choices=("zeros", "reflect", "replicate", "circular"),
                   help="how the border is filled (default zeros)")
    p.add_argument("--stride", type=_parse.int_tuple, default=1, help="S or SH,SW (default 1)")
    p.add_argument("--dilation", type=_parse.int_tuple, default=1, help="D or DH,DW (default 1)")
    p.add_argument("--range", dest="value_range", default="clip",
                   choices=("clip", "abs", "rescale"),
                   help="output value range handling (default clip)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--tile-rows", type=_parse.positive_int, default=None,
                   help="output rows per tile (default: from a 64 MiB budget)")
    p.add_argument("--tiled", action="store_true",
                   help="for images bigger than memory: stream TIFF/Zarr chunk by chunk "
                        "through dask to a tiled TIFF or Zarr (automatic for .zarr; "
                        "needs ndconv[dask])")


def load_kernel(spec: str) -> tuple[NDArray[np.float64], str]:
    """A named kernel or a .npy file -> (array, description)."""
    from ..images import kernels

    if spec.lower().endswith(".npy") or os.path.sep in spec:
        k = _parse.load_npy(spec)
        return k, f"{os.path.basename(spec)} {k.shape}"
    k = kernels.get(spec)
    return k, f"{spec} {k.shape[0]}x{k.shape[1]}"


def run(args: argparse.Namespace) -> None:
    from ..io import _files
    from .. import images

    # Every check before any work: a refused run touches nothing.
    if not os.path.exists(args.input):
        raise UsageError(f"input image {args.input!r} does not exist")
    if not args.input.lower().rstrip("/\\").endswith(".zarr"):  # a Zarr is a folder
        _files.check_regular(args.input, "input image")  # never open a FIFO or a device
    if args.tiled or any(p.lower().rstrip("/\\").endswith(".zarr") for p in (args.input, args.output)):
        return _run_tiled(args)
    _io.check_output(args.output, inputs=[args.input], force=args.force)
    kernel, kdesc = load_kernel(args.kernel)
    # An uncompressed TIFF's rows are read in a thread while the first bands
    # are filtered (filter_image waits for the rows each band reads).
    rows = images.read_image_rows(args.input)
    try:
        _filter(args, rows, kernel, kdesc)
    finally:
        rows.close()


def _filter(args: argparse.Namespace, rows: Any, kernel: NDArray[Any], kdesc: str) -> None:
    from .. import images

    image = rows.array
    channels_in = 1 if image.ndim == 2 else image.shape[2]
    channels_out = kernel.shape[0] if kernel.ndim == 4 else channels_in
    # What filter_image returns: the input's int dtype, float32 or float64.
    out_dtype = image.dtype if image.dtype.kind in "ui" or image.dtype == "float64" \
        else "float32"
    fmt = images.output_format(args.output, out_dtype, channels_out)
    # RGBA (or gray + alpha): a 2-D kernel filters the colour, alpha is kept.
    alpha = image.ndim == 3 and image.shape[2] in (2, 4) and kernel.ndim == 2

    bar = _progress(image.shape[0])
    result: NDArray[Any] | None = None

    def verify(tmp: str) -> None:  # runs once the file is complete: result is set
        assert result is not None
        images.verify_written(tmp, fmt, result)

    # Written, synced and read back under a temporary name; published without
    # replacing a file that appeared meanwhile (unless --force). A TIFF is
    # written band by band while the next bands are filtered (the write and
    # the disk's writeback overlap the computing); other formats once done.
    with _io.atomic_output(args.output, force=args.force, verify=verify) as f:
        bands = images.TiffBands(f) if fmt == "TIFF" and images.files.tifffile_installed() \
            else None
        try:
            result = images.filter_image(
                image, kernel, padding=args.padding, padding_mode=args.mode,
                stride=args.stride, dilation=args.dilation, value_range=args.value_range,
                rows_per_tile=args.tile_rows, progress=bar.update if bar else None,
                alpha=alpha, on_band=bands.band if bands else None, input_ready=rows.wait,
            )
            if result.ndim == 3 and result.shape[2] == 1:
                result = result[:, :, 0]
            if bands is not None:
                bands.close()  # every band written; the writer's error, if any, raised
            else:
                images.write_image(result, f, fmt)
        except BaseException:
            if bands is not None:
                bands.abort()  # the temporary file is then removed
            raise
        finally:
            if bar:
                bar.close()
    h, w = result.shape[:2]
    print(
        f"wrote {args.output}: {w}x{h} {fmt} from {image.shape[1]}x"
        f"{image.shape[0]}, kernel {kdesc}, padding {args.padding}, mode {args.mode}, "
        f"stride {args.stride}, dilation {args.dilation}, range {args.value_range}"
        + (", alpha kept (not filtered)" if alpha else "")
    )


def _progress(rows: int) -> Any:
    """A tqdm bar on a terminal for big images; None otherwise."""
    import sys

    if rows < 2048 or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=rows, unit="row", desc="filter", leave=False)


def _run_tiled(args: argparse.Namespace) -> None:
    """Bigger than memory: :func:`ndconv.tiled.filter_tiled`, chunk by chunk."""
    try:
        import dask.array  # noqa: F401
    except ImportError:
        from ._errors import Unavailable

        raise Unavailable("--tiled and .zarr need dask: pip install 'ndconv[dask]'") from None
    from ..images import tiled

    if not args.output.lower().rstrip("/\\").endswith(".zarr"):  # a Zarr is a folder
        _io.check_output(args.output, inputs=[args.input], force=args.force)
    kernel, kdesc = load_kernel(args.kernel)
    shape = tiled.filter_tiled(
        args.input, args.output, kernel, padding=args.padding, padding_mode=args.mode,
        stride=args.stride, dilation=args.dilation, value_range=args.value_range,
        overwrite=args.force, block=args.tile_rows or 1024, alpha=True,
    )
    alpha = len(shape) == 3 and shape[2] in (2, 4) and kernel.ndim == 2
    print(
        f"wrote {args.output}: {shape[1]}x{shape[0]} tiled, kernel {kdesc}, padding "
        f"{args.padding}, mode {args.mode}, stride {args.stride}, dilation "
        f"{args.dilation}, range {args.value_range}"
        + (", alpha kept (not filtered)" if alpha else "")
    )
