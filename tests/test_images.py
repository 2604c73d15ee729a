"""Filtering photos in tiles: against PyTorch (padding modes) and SciPy, on real images."""

import io
import os

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from ndconv.core import _args
from ndconv import images, kernels

DATA = os.path.dirname(skimage.data.__file__)
TORCH_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
              "circular": "circular"}


def torch_filter(img_chw, weight, pairs, mode, stride, dilation, groups):
    """Reference: torch.nn.functional.pad then conv2d, in float64."""
    x = torch.tensor(img_chw[None].astype(np.float64))
    (lh, hh), (lw, hw) = pairs
    x = F.pad(x, (lw, hw, lh, hh), mode=TORCH_MODE[mode])
    w = torch.tensor(np.asarray(weight, dtype=np.float64))
    return F.conv2d(x, w, stride=stride, dilation=dilation, groups=groups)[0].numpy()


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(3, 14), w=st.integers(3, 14), c=st.sampled_from([1, 3]),
    kh=st.integers(1, 3), kw=st.integers(1, 3),
    mode=st.sampled_from(sorted(TORCH_MODE)),
    padding=st.sampled_from(["same", "valid", "full", 1, (0, 2)]),
    stride=st.sampled_from([1, 2, (1, 3)]), dilation=st.sampled_from([1, 2]),
    rows=st.integers(1, 5), seed=st.integers(0, 2**16),
)
def test_tiled_filter_equals_torch(h, w, c, kh, kw, mode, padding, stride, dilation,
                                   rows, seed):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, c)).astype(np.uint8)
    k = rng.normal(size=(kh, kw))
    st_ = _args.ntuple(stride, 2, "stride")
    dl = _args.ntuple(dilation, 2, "dilation")
    try:
        pairs = _args.padding_pairs(padding, (kh, kw), dl, st_)
        _args.check_mode_fits((h, w), pairs, mode)
        _args.output_size((h, w), (kh, kw), st_, pairs, dl)
    except ValueError:
        with pytest.raises(ValueError):
            images.filter_image(img, k, padding=padding, padding_mode=mode,
                                stride=stride, dilation=dilation)
        return
    ours = images.filter_image(img, k, padding=padding, padding_mode=mode, stride=stride,
                               dilation=dilation, rows_per_tile=rows, value_range="clip")
    ref = torch_filter(np.moveaxis(img, -1, 0), np.broadcast_to(k, (c, 1, kh, kw)),
                       pairs, mode, st_, dl, c)
    ref = np.clip(np.rint(ref), 0, 255)
    assert ours.dtype == np.uint8
    # float32 inside the tiles: a value near .5 may round the other way.
    assert np.abs(np.moveaxis(ours, -1, 0).astype(int) - ref).max() <= 1


def test_same_padding_keeps_the_size_and_tiles_do_not_matter():
    cat = skimage.data.chelsea()
    k = kernels.get("gaussian:2")
    a = images.filter_image(cat, k, padding_mode="reflect", rows_per_tile=7)
    b = images.filter_image(cat, k, padding_mode="reflect", max_tile_bytes=1 << 30)
    assert a.shape == cat.shape and a.dtype == np.uint8
    # float32 sums in another order (or another algorithm) may round a .5 the
    # other way; nothing else may differ.
    d = np.abs(a.astype(int) - b)
    assert d.max() <= 1 and (d > 0).mean() < 1e-3


def test_real_photo_against_scipy_ndimage():
    from scipy import ndimage

    cat = skimage.data.chelsea()[:120, :160]
    k = kernels.get("sharpen")
    ours = images.filter_image(cat, k, padding="same", padding_mode="replicate",
                               rows_per_tile=16)
    ref = np.stack([ndimage.correlate(cat[..., i].astype(float), k, mode="nearest")
                    for i in range(3)], axis=-1)
    ref = np.clip(np.rint(ref), 0, 255)
    assert np.abs(ours.astype(int) - ref).max() <= 1
    assert (ours.astype(int) != ref).mean() < 1e-3


def test_colour_mixing_kernel_equals_a_matrix_product():
    coffee = skimage.data.coffee()[:50, :60]
    m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
    ours = images.filter_image(coffee, m[:, :, None, None])
    ref = np.clip(np.rint(coffee.astype(float) @ m.T), 0, 255)
    assert np.abs(ours.astype(int) - ref).max() <= 1


def test_mixing_3x3_spatial_kernel_against_torch():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (11, 9, 3)).astype(np.uint8)
    wt = rng.normal(size=(2, 3, 3, 3)) / 9
    ours = images.filter_image(img.astype(np.float64), wt, padding="valid",
                               value_range="clip", rows_per_tile=2)
    ref = torch_filter(np.moveaxis(img, -1, 0), wt, ((0, 0), (0, 0)), "zeros", 1, 1, 1)
    ref = np.clip(ref, img.min(), img.max())  # float input: clipped to its own range
    np.testing.assert_allclose(np.moveaxis(ours, -1, 0), ref, atol=1e-9)


def test_abs_and_rescale_ranges():
    gray = skimage.data.camera()[:64, :64]
    k = kernels.get("sobel-x")
    raw = torch_filter(gray[None], k[None, None], ((1, 1), (1, 1)), "zeros", 1, 1, 1)[0]
    a = images.filter_image(gray, k, value_range="abs")
    assert np.abs(a.astype(int) - np.clip(np.rint(np.abs(raw)), 0, 255)).max() <= 1
    r = images.filter_image(gray, k, value_range="rescale", rows_per_tile=5)
    ref = np.rint((raw - raw.min()) / (raw.max() - raw.min()) * 255)
    assert r.min() == 0 and r.max() == 255
    assert np.abs(r.astype(int) - ref).max() <= 1


def test_uint16_stays_uint16():
    img = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.uint16)
    out = images.filter_image(img, kernels.get("box:3"), padding_mode="replicate")
    assert out.dtype == np.uint16 and out.shape == img.shape
    assert out[5, 5] == img[4:7, 4:7].mean()


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(kernel=np.ones((2, 2, 2))), ValueError, "2-D"),
    (dict(kernel=np.ones((3, 1, 3, 3))), ValueError, "C_in = 1"),
    (dict(kernel=np.full((3, 3), np.nan)), ValueError, "NaN"),
    (dict(kernel=np.ones((3, 3)), value_range="wrap"), ValueError, "value_range"),
    (dict(kernel=np.ones((3, 3)), padding="bogus"), ValueError, "padding"),
    (dict(kernel=np.ones((3, 3)), padding="same", stride=2), ValueError, "same"),
    (dict(kernel=np.ones((3, 3)), stride=0), ValueError, "stride"),
    (dict(kernel=np.ones((3, 3)), padding_mode="mirror"), ValueError, "padding_mode"),
    (dict(kernel=np.ones((40, 3)), padding="valid"), ValueError, "larger than the padded"),
    (dict(kernel=np.ones((3, 3)), padding=20, padding_mode="reflect"), ValueError, "reflect"),
])
def test_bad_arguments(kwargs, exc, match):
    img = np.zeros((10, 12, 3), np.uint8)
    kernel = kwargs.pop("kernel")
    with pytest.raises(exc, match=match):
        images.filter_image(img, kernel, **kwargs)


def test_huge_dilation_is_refused_before_the_band_is_allocated():
    # 'same' with dilation 100000 pads 100000 on every side: one band of rows
    # with its halo would be 3 x 200001 x 200012 floats (480 GB).
    from ndconv.plan import MemoryLimitError, memory_limit

    img = np.zeros((10, 12, 3), np.uint8)
    with memory_limit("1GB"), pytest.raises(MemoryLimitError, match="band"):
        images.filter_image(img, np.ones((3, 3)), dilation=100000)


@pytest.mark.parametrize("img, exc, match", [
    (np.zeros((2, 2, 2, 2), np.uint8), ValueError, "shape"),
    (np.zeros((4, 4), bool), TypeError, "dtype"),
    (np.zeros((0, 4), np.uint8), ValueError, "empty"),
    (np.full((4, 4), np.inf), ValueError, "NaN or infinity"),
    ([[1, 2], [3, 4]], TypeError, "ndarray"),
])
def test_bad_images(img, exc, match):
    with pytest.raises(exc, match=match):
        images.filter_image(img, np.ones((1, 1)))


# --- files ---------------------------------------------------------------


def test_read_image_matches_scikit_image():
    cat = images.read_image(os.path.join(DATA, "chelsea.png"))
    np.testing.assert_array_equal(cat, skimage.data.chelsea())
    rocket = images.read_image(os.path.join(DATA, "rocket.jpg"))
    assert rocket.shape == skimage.data.rocket().shape and rocket.dtype == np.uint8


def test_read_image_tiff_and_gray():
    cam = images.read_image(os.path.join(DATA, "camera.png"))
    np.testing.assert_array_equal(cam, skimage.data.camera())
    # Two pages: refused, never cut silently to the first (issue 14, item 6).
    with pytest.raises(ValueError, match="has 2 pages"):
        images.read_image(os.path.join(DATA, "multipage.tif"))


def test_read_image_refuses_broken_files(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("not an image\n")
    trunc = tmp_path / "trunc.jpg"
    data = open(os.path.join(DATA, "rocket.jpg"), "rb").read()
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="empty"):
        images.read_image(empty)
    with pytest.raises(ValueError, match="not an image"):
        images.read_image(text)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        images.read_image(trunc)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        images.read_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="folder"):
        images.read_image(tmp_path)


@pytest.mark.parametrize("path, dtype, ch, fmt", [
    ("a.png", np.uint8, 3, "PNG"), ("a.PNG", np.uint8, 1, "PNG"),
    ("a.jpg", np.uint8, 3, "JPEG"), ("a.jpeg", np.uint8, 1, "JPEG"),
    ("a.tif", np.float32, 1, "TIFF"), ("a.tiff", np.uint16, 1, "TIFF"),
    ("a.png", np.uint16, 1, "PNG"), ("a.png", np.uint8, 4, "PNG"),
])
def test_output_format_accepts(path, dtype, ch, fmt):
    assert images.output_format(path, dtype, ch) == fmt


@pytest.mark.parametrize("path, dtype, ch, match", [
    ("a.gif", np.uint8, 3, "must end in"), ("a", np.uint8, 3, "must end in"),
    ("a.jpg", np.uint16, 1, "JPEG cannot"), ("a.jpg", np.uint8, 4, "JPEG cannot"),
    ("a.png", np.float32, 1, "PNG cannot"), ("a.png", np.uint8, 2, "2 channels"),
])
def test_output_format_refuses(path, dtype, ch, match):
    with pytest.raises(ValueError, match=match):
        images.output_format(path, dtype, ch)


@pytest.mark.parametrize("path, dtype, ch, advice", [
    ("a.jpg", np.uint16, 1, "use a .png or .tif output"),
    ("a.png", np.float32, 1, "use a .tif output"),
    ("a.jpg", np.uint8, 4, "use a .png or .tif output"),
    ("a.png", np.int32, 3, "use a .tif output"),
])
def test_output_format_refusal_gives_advice_that_works(path, dtype, ch, advice):
    with pytest.raises(ValueError) as exc:
        images.output_format(path, dtype, ch)
    assert str(exc.value).endswith(advice), str(exc.value)


@pytest.mark.parametrize("arr, fmt", [
    (np.arange(60, dtype=np.uint8).reshape(4, 5, 3), "PNG"),
    (np.arange(20, dtype=np.uint8).reshape(4, 5), "PNG"),
    (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000, "PNG"),
    (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000, "TIFF"),
    (np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5), "TIFF"),
])
def test_write_then_read_round_trip(arr, fmt):
    buf = io.BytesIO()
    images.write_image(arr, buf, fmt)
    buf.seek(0)
    with Image.open(buf) as im:
        back = np.asarray(im)
    np.testing.assert_array_equal(back.astype(arr.dtype), arr)


def test_gray_image_into_several_channels_keeps_every_channel():
    """A (C_out, 1, kh, kw) kernel on a gray image gives (H, W, C_out), each
    channel the correlation with its own kernel (compared with SciPy)."""
    import scipy.ndimage as ndi

    rng = np.random.default_rng(3)
    img = rng.random((9, 11))
    k = rng.standard_normal((3, 1, 3, 3))
    out = images.filter_image(img, k, padding="same", value_range="rescale")
    assert out.shape == (9, 11, 3)
    raw = images.filter_image(img, k, padding="same", value_range="clip")
    for c in range(3):
        ref = ndi.correlate(img, k[c, 0], mode="constant")
        # float images are clipped to their own range (see images._limits)
        np.testing.assert_allclose(np.clip(ref, img.min(), img.max()), raw[..., c], atol=1e-12)
