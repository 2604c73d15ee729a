"""Photos and image files: filter them with any kernel, read and write them.

- :mod:`ndconv.images.filter`: :func:`filter_image`, a photo (``(H, W)`` or
  ``(H, W, C)``, integer or float) correlated in bands of rows with bounded
  memory, any padding, boundary mode, stride and dilation, and the value-range
  rules for integer outputs;
- :mod:`ndconv.images.files`: :func:`read_image` / :func:`write_image`
  (Pillow, tifffile), which change nothing silently, and :class:`TiffBands`,
  which writes a TIFF band by band while it is filtered;
- :mod:`ndconv.images.kernels`: the bank of named 2-D kernels
  (``sobel-x``, ``gaussian:8``, ...), also importable as ``ndconv.kernels``;
- :mod:`ndconv.images.tiled`: :func:`filter_tiled`, for TIFF and Zarr files
  bigger than memory (through Dask), also importable as ``ndconv.tiled``.
"""

from . import files
from .files import (ImageRows, TiffBands, output_format, read_image, read_image_rows,
                    tiff_log, verify_written, write_image)
from .filter import VALUE_RANGES, centre_delta, check_finite_band, filter_image

__all__ = [
    "filter_image",
    "check_finite_band",
    "centre_delta",
    "VALUE_RANGES",
    "read_image",
    "read_image_rows",
    "ImageRows",
    "write_image",
    "output_format",
    "verify_written",
    "tiff_log",
    "TiffBands",
]
