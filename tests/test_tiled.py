"""filter_tiled: TIFF/Zarr in, tiled TIFF/Zarr out, chunk by chunk, atomically.

References: ndconv.images.filter_image (the in-memory filter, itself an
independent implementation by index arithmetic) and scipy.ndimage.correlate.
"""

import os
import tracemalloc

import numpy as np
import pytest

pytest.importorskip("dask.array")
tifffile = pytest.importorskip("tifffile")
zarr = pytest.importorskip("zarr")

from ndconv import tiled  # noqa: E402
from ndconv.images import filter_image  # noqa: E402

SHARPEN = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=float)


@pytest.fixture
def rgb():
    skimage = pytest.importorskip("skimage.data")
    return skimage.astronaut()[::2, ::2]  # (256, 256, 3) uint8, a real photo


def _read(path):
    if path.endswith(".zarr"):
        return zarr.open_array(path, mode="r")[...]
    return tifffile.imread(path)


@pytest.mark.parametrize("src, dst", [("in.tif", "out.tif"), ("in.tif", "out.zarr"), ("in.zarr", "out.tif")])
@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(padding="valid", stride=2, padding_mode="reflect", value_range="abs"),
    dict(dilation=2, padding_mode="circular", value_range="rescale"),
    dict(padding="full", padding_mode="replicate"),
])
def test_equals_in_memory_filter(tmp_path, rgb, src, dst, kwargs):
    inp, out = str(tmp_path / src), str(tmp_path / dst)
    if src.endswith(".tif"):
        tifffile.imwrite(inp, rgb, tile=(64, 64), compression="zlib", photometric="rgb")
    else:
        zarr.create_array(store=inp, data=rgb, chunks=(48, 80, 3))
    shape = tiled.filter_tiled(inp, out, SHARPEN, block=48, tile=32, **kwargs)
    got, ref = _read(out), filter_image(rgb, SHARPEN, **kwargs)
    assert shape == got.shape == ref.shape and got.dtype == ref.dtype == np.uint8
    # 'rescale' divides by the output's span: float32 rounding may move a value by one level.
    tol = 1 if kwargs.get("value_range") == "rescale" else 0
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= tol
    if dst.endswith(".tif"):
        with tifffile.TiffFile(out) as t:
            assert t.pages[0].is_tiled and t.pages[0].tilelength == 32
    assert sorted(os.listdir(tmp_path)) == sorted([src, dst])  # no temporary left


def test_planar_tiff_is_read_as_height_width_channels(tmp_path, rgb):
    # A planar RGB TIFF stores (3, H, W) (tifffile's axes 'SYX'); it is one
    # (H, W, 3) image, as Pillow reads it, not an image of height 3.
    img = rgb[:40, :50]
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(img, -1, 0), photometric="rgb",
                     planarconfig="separate")
    assert tiled.open_image(tmp_path / "planar.tif").shape == (40, 50, 3)
    shape = tiled.filter_tiled(tmp_path / "planar.tif", tmp_path / "out.tif", SHARPEN, block=16,
                               tile=16)
    assert shape == (40, 50, 3)
    np.testing.assert_array_equal(_read(str(tmp_path / "out.tif")), filter_image(img, SHARPEN))


def test_a_stack_of_pages_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 40, 50), np.uint8),
                     photometric="minisblack")
    with pytest.raises(ValueError, match="stack"):
        tiled.open_image(tmp_path / "stack.tif")


def test_two_channel_tiff_output(tmp_path, rgb):
    # A kernel mixing RGB into 2 channels: the TIFF holds (H, W, 2) samples per
    # pixel (tifffile read (H, W, 2) as H images of W x 2 and refused the tile).
    tifffile.imwrite(tmp_path / "in.tif", rgb[:40, :50])
    mix = np.array([[1, 0, 0], [0, 0.5, 0.5]], dtype=float)[:, :, None, None]
    shape = tiled.filter_tiled(tmp_path / "in.tif", tmp_path / "out.tif", mix, block=16, tile=16)
    got, ref = _read(str(tmp_path / "out.tif")), filter_image(rgb[:40, :50], mix)
    assert shape == got.shape == ref.shape == (40, 50, 2)
    assert np.array_equal(got, ref)


def test_float_gray_against_scipy(tmp_path):
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    img = rng.standard_normal((150, 97)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", img)  # uncompressed: memory-mapped
    k = rng.standard_normal((5, 4))
    tiled.filter_tiled(tmp_path / "f.tif", tmp_path / "f.zarr", k, padding_mode="reflect",
                       value_range="clip", block=40)
    got = _read(str(tmp_path / "f.zarr"))
    # torch's 'reflect' is scipy's 'mirror'; 'same' puts the even kernel's
    # extra element at the end, so the kernel's origin is one left of centre.
    ref = ndimage.correlate(img.astype(np.float64), k, mode="mirror", origin=(0, -1))
    ref = np.clip(ref, img.min(), img.max())  # 'clip': the input's own range
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def _peak(tmp_path, height):
    img = np.random.default_rng(1).random((height, 512), dtype=np.float32)
    src = str(tmp_path / f"{height}.zarr")
    zarr.create_array(store=src, data=img, chunks=(128, 128))
    del img
    tracemalloc.start()
    try:
        tiled.filter_tiled(src, tmp_path / f"{height}.tif", np.ones((5, 5)) / 25,
                           block=128, tile=128, scheduler="sync")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_image(tmp_path):
    # Warm up first, at both heights (in a folder of their own): modules
    # imported on first use (scipy.fft, ...) and numba compiling a kernel the
    # taller image's chunks take first are Python objects that tracemalloc
    # would count (seen: 6.2 MiB in a long test order, 1.6 alone).
    warm = tmp_path / "warm"
    warm.mkdir()
    _peak(warm, 256)
    _peak(warm, 2048)
    small, big = _peak(tmp_path, 256), _peak(tmp_path, 2048)  # 0.5 MiB and 4 MiB images
    # Held whole, the taller image and its output would add 7 MiB; chunk by
    # chunk only the task graph grows (a few hundred small tasks more).
    assert big - small < 2 << 20, f"peaks {small / 2**20:.2f} MiB and {big / 2**20:.2f} MiB"
    assert big < 4 << 20
    assert _read(str(tmp_path / "2048.tif")).shape == (2048, 512)


def test_failure_leaves_old_output_and_no_temporary(tmp_path, rgb, monkeypatch):
    inp, out = str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr")
    zarr.create_array(store=inp, data=rgb, chunks=(64, 64, 3))
    tiled.filter_tiled(inp, out, np.ones((1, 1)), block=64)
    before = _read(out)
    calls = []
    real = tiled._postprocess

    def failing(*a):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("disk full")
        return real(*a)

    monkeypatch.setattr(tiled, "_postprocess", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        tiled.filter_tiled(inp, out, SHARPEN, block=64, overwrite=True, scheduler="sync")
    assert sorted(os.listdir(tmp_path)) == ["in.zarr", "out.zarr"]
    np.testing.assert_array_equal(_read(out), before)


def test_refusals(tmp_path, rgb):
    inp = str(tmp_path / "in.tif")
    tifffile.imwrite(inp, rgb, photometric="rgb")
    with pytest.raises(ValueError, match="is the input"):
        tiled.filter_tiled(inp, inp, SHARPEN, overwrite=True)
    tifffile.imwrite(tmp_path / "old.tif", rgb[:4])
    with pytest.raises(FileExistsError, match="already exists"):
        tiled.filter_tiled(inp, str(tmp_path / "old.tif"), SHARPEN)
    with pytest.raises(FileNotFoundError, match="folder"):
        tiled.filter_tiled(inp, str(tmp_path / "no" / "o.tif"), SHARPEN)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tiled.filter_tiled(str(tmp_path / "missing.tif"), str(tmp_path / "o.tif"), SHARPEN)
    with pytest.raises(ValueError, match=r"\.tif, \.tiff or \.zarr"):
        tiled.filter_tiled(inp, str(tmp_path / "o.png"), SHARPEN)
    with pytest.raises(ValueError, match="multiple of 16"):
        tiled.filter_tiled(inp, str(tmp_path / "o.tif"), SHARPEN, tile=20)
    with pytest.raises(ValueError, match="padding_mode"):
        tiled.filter_tiled(inp, str(tmp_path / "o.tif"), SHARPEN, padding_mode="wrap")
    with pytest.raises(ValueError, match="C_in = 2"):
        tiled.filter_tiled(inp, str(tmp_path / "o.tif"), np.ones((3, 2, 3, 3)))
    (tmp_path / "text.tif").write_text("not an image")
    with pytest.raises(ValueError, match="not a readable TIFF"):
        tiled.filter_tiled(str(tmp_path / "text.tif"), str(tmp_path / "o.tif"), SHARPEN)
    nan = np.zeros((20, 20), np.float32)
    nan[3, 4] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", nan)
    with pytest.raises(ValueError, match="NaN"):
        tiled.filter_tiled(str(tmp_path / "nan.tif"), str(tmp_path / "o.tif"), SHARPEN)
    assert sorted(os.listdir(tmp_path)) == ["in.tif", "nan.tif", "old.tif", "text.tif"]


def test_cli_filter_zarr_and_tiled(tmp_path, rgb, capsys):
    from ndconv.cli import main

    zarr.create_array(store=str(tmp_path / "in.zarr"), data=rgb, chunks=(100, 100, 3))
    assert main(["filter", str(tmp_path / "in.zarr"), str(tmp_path / "o.zarr"), "--kernel", "sharpen"]) == 0
    np.testing.assert_array_equal(_read(str(tmp_path / "o.zarr")), filter_image(rgb, SHARPEN))
    assert main(["filter", str(tmp_path / "in.zarr"), str(tmp_path / "o.zarr"), "--kernel", "sharpen"]) == 2
    assert "already exists" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "in.tif", rgb, photometric="rgb")
    assert main(["filter", str(tmp_path / "in.tif"), str(tmp_path / "o.tif"), "--tiled",
                 "--kernel", "box:3", "--stride", "2", "--padding", "valid"]) == 0
    from ndconv import kernels

    np.testing.assert_array_equal(
        _read(str(tmp_path / "o.tif")),
        filter_image(rgb, kernels.get("box:3"), stride=2, padding="valid"),
    )
