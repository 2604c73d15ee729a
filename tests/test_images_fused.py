"""filter_image's fused path (one compiled pass from the image's dtype to the
output's, for 2-D kernels of few nonzero taps) against SciPy, OpenCV and
float64 references, for every boundary mode, dtype and layout it serves."""

from __future__ import annotations

import numpy as np
import pytest

from ndconv import images, kernels
from ndconv.images import _fused

ndimage = pytest.importorskip("scipy.ndimage")
pytest.importorskip("numba")

SCIPY_MODE = {"zeros": "constant", "reflect": "mirror", "replicate": "nearest",
              "circular": "wrap"}


def scipy_filter(img, k, mode):
    """float64 'same' correlation of each channel, SciPy's (odd kernels)."""
    f = img.astype(np.float64)
    if f.ndim == 2:
        return ndimage.correlate(f, k, mode=SCIPY_MODE[mode], cval=0.0)
    return np.stack([ndimage.correlate(f[..., c], k, mode=SCIPY_MODE[mode], cval=0.0)
                     for c in range(f.shape[2])], axis=-1)


def test_the_bank_takes_the_fused_path():
    for name in kernels.names():
        k = kernels.get(name)
        assert _fused.plan(k, "clip", np.dtype(np.float32), 255.0, np.uint8), name
    f32 = np.dtype(np.float32)
    assert _fused.plan(kernels.get("motion:31"), "clip", f32, 255.0, np.uint8)[0] == "direct"
    for name in ("box:31", "gaussian:8", "gaussian:2"):
        assert _fused.plan(kernels.get(name), "clip", f32, 255.0, np.uint8)[0] == "separable", name
    big = np.random.default_rng(0).standard_normal((15, 15))  # rank 15: the bands' FFT
    assert _fused.plan(big, "clip", f32, 255.0, np.uint8) is None
    # numba has no float16 arrays: such images take the bands
    assert _fused.plan(kernels.get("sharpen"), "clip", f32, 1.0, np.float16) is None
    assert not _fused.plan(kernels.get("sharpen"), "rescale", np.dtype(np.float32), 255.0, np.uint8)


@pytest.mark.parametrize("mode", sorted(SCIPY_MODE))
@pytest.mark.parametrize("name", ["sharpen", "edge", "gaussian", "emboss", "motion:7", "box:5"])
def test_uint8_rgb_equals_scipy(mode, name):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    k = kernels.get(name)
    ours = images.filter_image(img, k, padding_mode=mode, rows_per_tile=9)
    ref = np.clip(np.rint(scipy_filter(img, k, mode)), 0, 255)
    assert ours.dtype == np.uint8 and ours.shape == img.shape
    # float32 sums: a value at .5 may round the other way, nothing else
    d = np.abs(ours.astype(int) - ref)
    assert d.max() <= 1 and (d > 0).mean() < 1e-2


@pytest.mark.parametrize("mode, border", [("zeros", "BORDER_CONSTANT"),
                                          ("reflect", "BORDER_REFLECT_101"),
                                          ("replicate", "BORDER_REPLICATE")])
@pytest.mark.parametrize("name", ["sharpen", "sobel-x", "laplacian", "identity", "diff"])
def test_uint8_equals_opencv_filter2d(mode, border, name):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    k = kernels.get(name)
    # OpenCV anchors a kernel at k // 2: for the 1x2 kernel, one column of
    # padding before, none after ('same' puts it after).
    padding = ((0, 0), (1, 0)) if k.shape == (1, 2) else "same"
    ours = images.filter_image(img, k, padding=padding, padding_mode=mode)
    ref = cv2.filter2D(img, -1, k.astype(np.float32), borderType=getattr(cv2, border))
    assert np.abs(ours.astype(int) - ref).max() <= 1


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int16, np.int32, np.int8,
                                   np.float64, np.float16])
@pytest.mark.parametrize("mode", sorted(SCIPY_MODE))
def test_uint16_float_and_signed_images(dtype, mode):
    rng = np.random.default_rng(2)
    floating = np.dtype(dtype).kind == "f"
    if floating:
        img = rng.standard_normal((29, 31, 3)).astype(dtype)
    else:  # int32 beyond 2**24 is computed in float64
        info = np.iinfo(dtype)
        img = rng.integers(info.min, info.max, (29, 31, 3), endpoint=True).astype(dtype)
    k = rng.standard_normal((3, 5)) / 4
    k[1, 2] = 0  # a zero tap inside
    ours = images.filter_image(img, k, padding=((1, 1), (2, 2)), padding_mode=mode)
    raw = scipy_filter(img, k, mode)
    assert ours.dtype == (np.float32 if dtype in (np.float16, np.float32) else dtype)
    if floating:
        ref = np.clip(raw, img.min(), img.max())  # float: the input's own range
        assert np.abs(ours - ref).max() <= 1e-5 * np.abs(ref).max()
    else:
        info = np.iinfo(dtype)
        ref = np.clip(np.rint(raw), info.min, info.max)
        # float32 sums of 16-bit values: a few units of the last place
        assert np.abs(ours.astype(np.int64) - ref).max() <= 2


def test_gray_stride_dilation_and_bands_against_float64():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (41, 47), dtype=np.uint8)
    k = rng.standard_normal((3, 3))
    for stride, dilation, padding, mode in [((2, 3), 1, 1, "zeros"), (1, (2, 3), "same", "reflect"),
                                            (2, 2, "full", "zeros"), ((1, 2), 1, "valid", "circular"),
                                            (3, (1, 2), ((0, 4), (3, 1)), "replicate")]:
        ours = images.filter_image(img, k, padding=padding, padding_mode=mode, stride=stride,
                                   dilation=dilation, rows_per_tile=4)
        ref = np.clip(np.rint(_unclipped(img, k, padding, mode, stride, dilation)), 0, 255)
        assert ours.ndim == 2 and ours.shape == ref.shape
        assert np.abs(ours.astype(int) - ref).max() <= 1


def _unclipped(img, k, padding, mode, stride, dilation):
    """float64 correlation through torch (padding, boundary mode, stride, dilation)."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from ndconv.core import _args

    st = _args.ntuple(stride, 2, "stride")
    dl = _args.ntuple(dilation, 2, "dilation")
    (lh, hh), (lw, hw) = _args.padding_pairs(padding, k.shape, dl, st)
    x = torch.tensor(img[None, None].astype(np.float64))
    tmode = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
             "circular": "circular"}[mode]
    x = F.pad(x, (lw, hw, lh, hh), mode=tmode)
    return F.conv2d(x, torch.tensor(k[None, None]), stride=st, dilation=dl)[0, 0].numpy()


def test_abs_range_and_alpha_kept():
    rng = np.random.default_rng(4)
    rgba = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    k = kernels.get("edge")
    ours = images.filter_image(rgba, k, value_range="abs", alpha=True)
    ref = np.clip(np.rint(np.abs(scipy_filter(rgba[..., :3], k, "zeros"))), 0, 255)
    assert ours.shape == rgba.shape
    assert np.array_equal(ours[..., 3], rgba[..., 3])
    assert np.abs(ours[..., :3].astype(int) - ref).max() <= 1


def test_zero_kernel_views_and_progress():
    rng = np.random.default_rng(5)
    big = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    view = big[5:45:2, ::3]  # not contiguous
    assert not images.filter_image(view, np.zeros((3, 3))).any()
    done = []
    ours = images.filter_image(view, kernels.get("sharpen"), rows_per_tile=6,
                               progress=done.append)
    assert done == [6, 6, 6, 2]
    ref = np.clip(np.rint(scipy_filter(np.ascontiguousarray(view), kernels.get("sharpen"),
                                       "zeros")), 0, 255)
    assert np.abs(ours.astype(int) - ref).max() <= 1


def test_without_numba_the_bands_give_the_same_image(monkeypatch):
    rng = np.random.default_rng(6)
    img = rng.integers(0, 256, (33, 35, 3), dtype=np.uint8)
    k = kernels.get("emboss")
    fused = images.filter_image(img, k, padding_mode="reflect")
    monkeypatch.setitem(_fused._KERNELS, "k", None)
    assert not _fused.plan(k, "clip", np.dtype(np.float32), 255.0, np.uint8)
    bands = images.filter_image(img, k, padding_mode="reflect")
    assert np.abs(fused.astype(int) - bands).max() <= 1


@pytest.mark.parametrize("mode", sorted(SCIPY_MODE))
@pytest.mark.parametrize("name", ["box:9", "gaussian:2", "box:31"])
def test_rank_one_kernels_take_two_passes_and_equal_scipy(mode, name):
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (70, 300, 3), dtype=np.uint8)  # several strips of columns
    k = kernels.get(name)
    assert _fused.plan(k, "clip", np.dtype(np.float32), 255.0, np.uint8)[0] == "separable"
    ours = images.filter_image(img, k, padding_mode=mode, rows_per_tile=23)
    ref = np.clip(np.rint(scipy_filter(img, k, mode)), 0, 255)
    d = np.abs(ours.astype(int) - ref)
    assert d.max() <= 1 and (d > 0).mean() < 1e-2


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_rank_one_with_stride_dilation_and_padding(dtype):
    rng = np.random.default_rng(8)
    img = (rng.random((60, 700)) * (255 if dtype == np.uint8 else 60000)).astype(dtype)
    k = np.outer(rng.standard_normal(9), rng.standard_normal(8)) / 20  # rank 1, even width
    assert _fused.plan(k, "clip", np.dtype(np.float32), 255.0, np.uint8)[0] == "separable"
    for stride, dilation, padding, mode in [((2, 3), 1, 4, "zeros"), (1, (2, 3), "same", "reflect"),
                                            ((1, 2), 2, "full", "circular"),
                                            (3, (1, 2), ((0, 4), (3, 1)), "replicate")]:
        ours = images.filter_image(img, k, padding=padding, padding_mode=mode, stride=stride,
                                   dilation=dilation, rows_per_tile=7)
        raw = _unclipped(img, k, padding, mode, stride, dilation)
        if dtype == np.float32:
            ref = np.clip(raw, img.min(), img.max())
            assert np.abs(ours - ref).max() <= 1e-5 * np.abs(raw).max()
        else:
            info = np.iinfo(dtype)
            ref = np.clip(np.rint(raw), info.min, info.max)
            assert np.abs(ours.astype(np.int64) - ref).max() <= (1 if dtype == np.uint8 else 2)


@pytest.mark.parametrize("shape, dtype", [((700, 600, 3), np.uint8), ((500, 400, 4), np.uint16),
                                          ((900, 700), np.float32), ((3, 5, 3), np.uint8)])
def test_tiff_written_in_pieces_is_the_whole_arrays_file(tmp_path, shape, dtype):
    tifffile = pytest.importorskip("tifffile")
    from ndconv.io import _files

    rng = np.random.default_rng(9)
    arr = (rng.random(shape) * 1000).astype(dtype)  # several 1 MiB pieces, or one
    path = tmp_path / "out.tif"
    with _files.atomic_write(path) as f:
        images.write_image(arr, f, "TIFF")
    colour = arr.ndim == 3
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, arr, photometric="rgb" if colour else "minisblack",
                     extrasamples=("unassalpha",) if colour and shape[2] == 4 else None,
                     planarconfig="contig" if colour else None)
    assert path.read_bytes() == whole.read_bytes()
    np.testing.assert_array_equal(tifffile.imread(path), arr)
