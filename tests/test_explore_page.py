"""The ``ndconv explore`` page in Chromium (Playwright): what a user does and sees.

The numbers the page shows are checked against SciPy computed here, never
against the server's own code.
"""

import re

import numpy as np
import pytest
import skimage.data
from PIL import Image
from scipy import ndimage

from test_explore import srv  # noqa: F401  (the server fixture, one per module)

expect = pytest.importorskip("playwright.sync_api").expect


def opened(page, srv):
    page.goto(srv.url)
    expect(page.get_by_test_id("out-shape")).not_to_be_empty()
    return page


def click_cell(page, testid, i, j, rows, cols):
    """Click the centre of cell (i, j) of a canvas showing rows x cols cells, and
    wait until the page shows another picked element."""
    before = page.get_by_test_id("picked").text_content()
    box = page.get_by_test_id(testid).bounding_box()
    page.mouse.click(box["x"] + (j + 0.5) * box["width"] / cols,
                     box["y"] + (i + 0.5) * box["height"] / rows)
    expect(page.get_by_test_id("picked")).not_to_have_text(before)


def picked(page, i, j):
    """The output pixel the page says was clicked: within one pixel of (i, j) (the
    browser rounds the click to whole CSS pixels, which can be < 1 image pixel)."""
    expect(page.get_by_test_id("picked")).to_have_text(re.compile(r"output pixel \(\d+, \d+\)"))
    pi, pj = map(int, re.findall(r"\d+", page.get_by_test_id("picked").text_content()))
    assert abs(pi - i) <= 1 and abs(pj - j) <= 1, (pi, pj, i, j)
    return pi, pj


def sum_value(text):
    """The value after the last '=' of the first sum line."""
    return float(text.splitlines()[0].split("=")[-1].split()[0])


def only_local(page, srv):
    return [u for u in page.requested if not (u.startswith(srv.url) or u.startswith("data:"))]


def test_page_loads_without_errors_or_foreign_requests(page, srv):
    opened(page, srv)
    expect(page.get_by_test_id("out-shape")).to_contain_text("300 x 451")  # chelsea, same
    assert page.console_errors == []
    assert only_local(page, srv) == []
    # the kernel menu is the bank of ndconv.kernels (plus custom values)
    from ndconv import kernels

    options = page.get_by_test_id("kernel").locator("option").all_text_contents()
    assert options == kernels.names() + ["custom"]
    assert page.get_by_test_id("error").is_hidden()


def test_pick_kernel_output_click_pixel_sum_matches(page, srv):
    from ndconv import kernels

    opened(page, srv)
    page.get_by_test_id("photo").select_option("camera")
    page.get_by_test_id("kernel").select_option("sobel-x")
    page.get_by_test_id("range").select_option("abs")
    expect(page.get_by_test_id("out-shape")).to_contain_text("512 x 512")
    expect(page.get_by_test_id("kernel-text")).to_have_value(re.compile(r"\[\[-1, 0, 1\]"))
    cam = skimage.data.camera().astype(float)
    ref = ndimage.correlate(cam, kernels.get("sobel-x"), mode="constant")
    for i, j in [(100, 300), (256, 40)]:
        click_cell(page, "output", i, j, 512, 512)
        i, j = picked(page, i, j)
        expect(page.get_by_test_id("sum")).to_contain_text(f"grey: y[{i}, {j}] = ")
        text = page.get_by_test_id("sum").text_content()
        assert text.startswith(f"grey: y[{i}, {j}] = ")
        assert sum_value(text.split(": ", 1)[1]) == ref[i, j]
        # the products are the 3x3 window of the photo times sobel-x, in order
        products = re.findall(r"(\(?-?\d+\)?)x(\(?-?\d+\)?)", text.splitlines()[0])
        xs = [float(a.strip("()")) for a, _ in products]
        assert xs == cam[i - 1:i + 2, j - 1:j + 2].ravel().tolist()
        assert f"shown as {int(min(255, abs(ref[i, j])))} (range abs)" in text
    assert page.console_errors == [] and only_local(page, srv) == []


def test_typed_kernel_stride_and_dilation(page, srv):
    opened(page, srv)
    page.get_by_test_id("photo").select_option("camera")
    page.get_by_test_id("kernel-text").fill("[[0, 1], [2, 3]]")
    expect(page.get_by_test_id("kernel")).to_have_value("custom")
    page.get_by_test_id("padding").fill("0")
    page.get_by_test_id("stride").fill("2")
    page.get_by_test_id("dilation").fill("3")
    # floor((512 - 3*(2-1) - 1) / 2) + 1 = 255
    expect(page.get_by_test_id("out-shape")).to_contain_text("255 x 255")
    click_cell(page, "output", 10, 20, 255, 255)
    i, j = picked(page, 10, 20)
    expect(page.get_by_test_id("sum")).to_contain_text(f"grey: y[{i}, {j}] = ")
    cam = skimage.data.camera().astype(float)
    r, c = 2 * i, 2 * j  # the window's corner: index * stride
    want = cam[r, c] * 0 + cam[r, c + 3] * 1 + cam[r + 3, c] * 2 + cam[r + 3, c + 3] * 3
    assert sum_value(page.get_by_test_id("sum").text_content().split(": ", 1)[1]) == want
    assert page.get_by_test_id("where").text_content() == (
        f"= x[{r}, {c}]*k[0, 0] + x[{r}, {c + 3}]*k[0, 1] + x[{r + 3}, {c}]*k[1, 0] + "
        f"x[{r + 3}, {c + 3}]*k[1, 1]")


def test_upload_then_filter_and_click(page, srv, tmp_path):
    rgb = skimage.data.astronaut()[100:160, 200:280]  # 60 x 80
    path = tmp_path / "crop.png"
    Image.fromarray(rgb).save(path)
    opened(page, srv)
    page.get_by_test_id("upload").set_input_files(str(path))
    expect(page.get_by_test_id("photo")).to_have_value(re.compile(r"^upload-[0-9a-f]{16}$"))
    expect(page.get_by_test_id("in-shape")).to_contain_text("60 x 80, 3 channel(s)")
    page.get_by_test_id("kernel").select_option("identity")
    expect(page.get_by_test_id("kernel-text")).to_have_value(re.compile(r"\[\[0, 0, 0\]"))
    click_cell(page, "output", 30, 40, 60, 80)
    i, j = picked(page, 30, 40)
    lines = page.get_by_test_id("sum").text_content().splitlines()
    for c, line in enumerate(lines):  # identity: each channel's sum is the pixel itself
        assert line.startswith("RGB"[c] + ": ") and sum_value(line.split(": ", 1)[1]) == rgb[i, j, c]
    assert page.console_errors == [] and only_local(page, srv) == []


def test_bad_upload_shows_the_reason(page, srv, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    opened(page, srv)
    page.get_by_test_id("upload").set_input_files(str(path))
    expect(page.get_by_test_id("error")).to_contain_text("upload: the upload is not an image")


def test_bad_setting_shows_ndconv_message(page, srv):
    opened(page, srv)
    page.get_by_test_id("stride").fill("2")  # with padding 'same'
    expect(page.get_by_test_id("error")).to_contain_text("'same' is not supported with `stride`")
    page.get_by_test_id("padding").fill("1")
    expect(page.get_by_test_id("error")).to_be_hidden()


def test_1d_mode_ecg(page, srv):
    import pywt

    opened(page, srv)
    page.get_by_test_id("mode-1d").click()
    expect(page.get_by_test_id("out-shape")).to_contain_text("1024 samples")
    ecg = pywt.data.ecg().astype(float)
    k = np.array([1, 4, 6, 4, 1]) / 16
    ref = np.correlate(np.pad(ecg, 2), k, mode="valid")
    box = page.get_by_test_id("output").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2)
    expect(page.get_by_test_id("picked")).to_have_text(re.compile(r"y\[\d+\]"))
    i = int(re.search(r"\d+", page.get_by_test_id("picked").text_content()).group())
    assert 300 < i < 520  # near 40% of the plot's width
    assert sum_value(page.get_by_test_id("sum").text_content()) == pytest.approx(ref[i], abs=1e-3)
    assert page.console_errors == [] and only_local(page, srv) == []


def test_3d_mode_mri_slices(page, srv):
    from ndconv.explore.samples import mri

    opened(page, srv)
    page.get_by_test_id("mode-3d").click()
    expect(page.get_by_test_id("out-shape")).to_contain_text("33 x 41 x 25")
    expect(page.get_by_test_id("slice-value")).to_have_text("12 of 0..24")
    vol = mri()
    ref = ndimage.correlate(vol, np.full((3, 3, 3), 1 / 27), mode="constant")
    click_cell(page, "output", 16, 20, 33, 41)  # axis 2: the plane is (dim 0, dim 1)
    expect(page.get_by_test_id("picked")).to_have_text("y[16, 20, 12]")
    text = page.get_by_test_id("sum").text_content()
    assert text.count("x0.037037") == 27
    assert sum_value(text) == pytest.approx(ref[16, 20, 12], rel=1e-5)
    # the output in the input's grey scale by default, or in its own
    def js(v):  # JavaScript's Number(v.toPrecision(4)) as text
        g = float(f"{v:.4g}")
        return str(int(g)) if g.is_integer() else repr(g)

    lo, hi = (js(v) for v in np.percentile(vol, [1, 99], method="lower"))
    note = page.get_by_test_id("scale-note")
    expect(note).to_contain_text(f"input {lo}..{hi}, output {lo}..{hi}")
    page.get_by_test_id("scale").select_option("own")
    olo, ohi = (js(v) for v in np.percentile(ref, [1, 99], method="lower"))
    expect(note).to_contain_text(f"output {olo}..{ohi}")
    # another slice along another axis
    page.get_by_test_id("axis").select_option("0")
    expect(page.get_by_test_id("slice-value")).to_have_text("16 of 0..32")
    assert page.console_errors == [] and only_local(page, srv) == []
