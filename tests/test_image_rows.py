"""Reading a TIFF's rows while they are filtered (``images.read_image_rows``,
``filter_image(input_ready=)``): the array read is exactly ``read_image``'s,
the files it cannot stream are read whole, a truncated file fails, and every
band of ``filter_image`` waits for the input rows it reads (an image filled
row by row, on demand, filters to the same pixels as the whole one)."""

from __future__ import annotations

import numpy as np
import pytest

from ndconv import images
from ndconv.images import kernels

tifffile = pytest.importorskip("tifffile")


def _rgb(r):
    return r.integers(0, 256, (61, 300, 3), dtype=np.uint8)


# name -> (image maker, tifffile.imwrite keywords, streamed?)
FILES = {
    "rgb8": (_rgb, dict(photometric="rgb"), True),
    "rgb8 small strips": (_rgb, dict(photometric="rgb", rowsperstrip=3), True),
    "gray16": (lambda r: r.integers(0, 65536, (40, 33), dtype=np.uint16),
               dict(photometric="minisblack"), True),
    "gray int32": (lambda r: r.integers(-2**31, 2**31, (20, 9), dtype=np.int32),
                   dict(photometric="minisblack"), True),
    "rgba8": (lambda r: r.integers(0, 256, (21, 17, 4), dtype=np.uint8),
              dict(photometric="rgb", extrasamples=("unassalpha",)), True),
    "big-endian 16": (lambda r: r.integers(0, 65536, (30, 20), dtype=np.uint16),
                      dict(photometric="minisblack", byteorder=">"), False),
    "deflate": (_rgb, dict(photometric="rgb", compression="zlib"), False),
    "float32": (lambda r: r.standard_normal((25, 30)).astype(np.float32),
                dict(photometric="minisblack"), False),
    "planar": (lambda r: r.integers(0, 256, (3, 20, 30), dtype=np.uint8),
               dict(photometric="rgb", planarconfig="separate"), False),
    "tiled": (lambda r: r.integers(0, 256, (64, 64), dtype=np.uint8),
              dict(photometric="minisblack", tile=(32, 32)), False),
    "oriented": (_rgb, dict(photometric="rgb", extratags=[(274, "H", 1, 6, True)]), False),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_rows_read_are_read_images(tmp_path, name):
    make, kw, streamed = FILES[name]
    a = make(np.random.default_rng(len(name)))
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, a, **kw)
    rows = images.read_image_rows(path)
    try:
        assert (rows._thread is not None) is streamed
        rows.wait(rows.array.shape[0])
        ref = images.read_image(path)
        assert rows.array.dtype == ref.dtype and rows.array.shape == ref.shape
        assert np.array_equal(rows.array, ref)
    finally:
        rows.close()


def test_pillow_tiff_and_png_are_read_images(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    a = _rgb(np.random.default_rng(5))
    for name, streamed in (("pil.tif", True), ("pil.png", False)):
        PIL.fromarray(a).save(tmp_path / name)
        rows = images.read_image_rows(tmp_path / name)
        rows.wait(10**9)  # more rows than the image has: all of them
        assert (rows._thread is not None) is streamed
        assert np.array_equal(rows.array, a)
        rows.close()


def test_truncated_pixels_fail_the_wait(tmp_path):
    a = _rgb(np.random.default_rng(6))
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, a, photometric="rgb")
    data = path.read_bytes()
    pixels = data.find(a.tobytes()[:4096])
    assert pixels > 0
    path.write_bytes(data[:pixels + a.nbytes // 2])  # the second half of the pixels gone
    with pytest.raises(ValueError, match="truncated or corrupt"):
        images.read_image(path)
    try:
        rows = images.read_image_rows(path)
    except ValueError as exc:  # refused from the header: as good
        assert "truncated or corrupt" in str(exc)
        return
    rows.wait(a.shape[0] // 4)  # the first rows are there
    with pytest.raises(ValueError, match="truncated or corrupt"):
        rows.wait(a.shape[0])
    rows.close()


class _OnDemand:
    """An image that holds garbage until ``wait(n)`` copies rows 0..n-1 in."""

    def __init__(self, image):
        self.image = image
        self.array = np.full_like(image, 255 if image.dtype.kind == "u" else -7)
        self.calls = []

    def wait(self, n):
        n = max(0, min(n, self.image.shape[0]))
        assert not self.calls or n >= 0
        self.calls.append(n)
        self.array[:n] = self.image[:n]


@pytest.mark.parametrize("kernel, kw", [
    ("sharpen", {}),                                        # fused direct
    ("gaussian:2", {}),                                     # fused separable
    ("motion:9", {"stride": 2, "dilation": (2, 1), "padding": 3}),
    ("box:3", {"padding": "full"}),
    ("edge", {"padding": "valid", "value_range": "rescale"}),  # two passes over the bands
    ("gaussian:8", {}),                                     # bands through conv
    ("emboss", {"padding_mode": "reflect"}),                # waits for all rows first
    (np.random.default_rng(0).standard_normal((3, 3, 5, 5)), {}),  # mixing channels: bands
])
def test_every_band_waits_for_the_rows_it_reads(kernel, kw):
    img = np.random.default_rng(1).integers(0, 256, (97, 300, 3), dtype=np.uint8)
    k = kernels.get(kernel) if isinstance(kernel, str) else kernel
    ref = images.filter_image(img, k, rows_per_tile=5, **kw)
    src = _OnDemand(img)
    out = images.filter_image(src.array, k, rows_per_tile=5, input_ready=src.wait, **kw)
    assert np.array_equal(out, ref)
    assert src.calls
    if kw.get("value_range") != "rescale":  # (which passes over the bands twice)
        assert src.calls == sorted(src.calls)  # in order
    if kw.get("padding_mode", "zeros") == "zeros":
        assert src.calls[0] < img.shape[0]  # the first band did not wait for the whole image


def test_a_float_image_waits_for_all_rows_first():
    img = np.random.default_rng(2).standard_normal((30, 300)).astype(np.float32)
    src = _OnDemand(img)
    out = images.filter_image(src.array, kernels.get("box:3"), input_ready=src.wait)
    assert src.calls[0] == img.shape[0]
    assert np.array_equal(out, images.filter_image(img, kernels.get("box:3")))
