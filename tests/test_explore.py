"""``ndconv explore``'s server and JSON API, over real HTTP on a loopback port.

The answers are checked against PyTorch and SciPy (never against the code that
serves them); every bad request must get its 4xx with a one-line JSON error,
and the server must keep answering afterwards.
"""

import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import skimage.data
from PIL import Image
from scipy import ndimage

from conftest import torch_conv
from ndconv.explain import Explainer
from ndconv.explore import api, samples, server as srvmod
from ndconv.explore import make_server

SCIPY_MODES = {"zeros": "constant", "reflect": "mirror", "replicate": "nearest",
               "circular": "wrap"}


@pytest.fixture(scope="module")
def srv():
    """The server on a free loopback port, logging into ``srv.lines``."""
    lines = []
    s = make_server("127.0.0.1", 0, log=lines.append)
    s.lines = lines
    t = threading.Thread(target=s.serve_forever, daemon=True)
    t.start()
    yield s
    s.shutdown()
    s.server_close()
    t.join(5)


def call(srv, method, path, body=None, headers=None, raw=None):
    """``(status, decoded JSON or bytes, headers)`` of one request."""
    host, port = srv.server_address[:2]
    c = http.client.HTTPConnection(host, port, timeout=30)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    c.request(method, path, body=data, headers=headers or {})
    r = c.getresponse()
    payload = r.read()
    c.close()
    if r.getheader("Content-Type", "").startswith("application/json"):
        payload = json.loads(payload)
    return r.status, payload, r


def alive(srv):
    status, out, _ = call(srv, "POST", "/api/conv", {"x": [[0, 1, 2], [3, 4, 5], [6, 7, 8]],
                                                      "kernel": [[0, 1], [2, 3]]})
    assert status == 200 and out["y"] == [[19, 25], [37, 43]], out


# --- /api/conv against PyTorch ----------------------------------------------

CASES = [
    # (x shape, kernel shape, stride, padding, dilation, padding_mode)
    ((9,), (3,), 1, 0, 1, "zeros"),
    ((17,), (4,), 2, ((1, 2),), 1, "zeros"),
    ((12,), (3,), 1, 2, 3, "reflect"),
    ((10,), (5,), 3, "full", 1, "zeros"),
    ((8, 9), (3, 3), 1, 1, 1, "zeros"),
    ((8, 9), (2, 3), (2, 1), ((0, 1), (2, 0)), 1, "replicate"),
    ((7, 10), (3, 2), 1, (2, 1), (2, 3), "circular"),
    ((8, 9), (3, 3), 1, "same", 2, "zeros"),
    ((6, 7, 5), (3, 3, 3), 1, 1, 1, "zeros"),
    ((6, 7, 5), (2, 3, 2), (1, 2, 2), 1, (2, 1, 1), "reflect"),
    ((5, 6, 7), (3, 1, 2), 2, ((1, 0), (0, 0), (1, 1)), 1, "circular"),
]


def _pairs(padding, ks, dil):
    """The padding as (lo, hi) pairs, worked out here for the torch reference."""
    n = len(ks)
    if padding == "full":
        return tuple((d * (k - 1), d * (k - 1)) for k, d in zip(ks, dil))
    if isinstance(padding, int):
        return ((padding, padding),) * n
    if isinstance(padding[0], int):
        return tuple((p, p) for p in padding)
    return tuple(tuple(p) for p in padding)


@pytest.mark.parametrize("xs, ks, stride, padding, dilation, mode", CASES)
def test_conv_equals_torch(srv, rng, xs, ks, stride, padding, dilation, mode):
    x = rng.integers(-9, 10, xs).astype(float)
    k = rng.standard_normal(ks).round(3)
    body = {"x": x.tolist(), "kernel": k.tolist(), "stride": stride, "padding": padding,
            "dilation": dilation, "padding_mode": mode}
    status, out, _ = call(srv, "POST", "/api/conv", body)
    assert status == 200, out
    n = len(xs)
    dil = (dilation,) * n if isinstance(dilation, int) else dilation
    pad = padding if padding == "same" else _pairs(padding, ks, dil)
    ref = torch_conv(x[None], k[None, None], None, stride, pad, dilation, 1, mode)[0]
    y = np.array(out["y"])
    assert out["shape"] == list(ref.shape) == list(y.shape)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_conv_valid_equals_scipy_correlate_and_bias(srv, rng):
    from scipy import signal as ss

    x = rng.standard_normal((11, 13))
    k = rng.standard_normal((4, 3))
    status, out, _ = call(srv, "POST", "/api/conv", {"x": x.tolist(), "kernel": k.tolist(),
                                                      "bias": 0.5})
    assert status == 200
    np.testing.assert_allclose(out["y"], ss.correlate(x, k, mode="valid") + 0.5, atol=1e-12)


def test_explain_the_lectures_19(srv):
    status, out, _ = call(srv, "POST", "/api/explain", {
        "x": [[0, 1, 2], [3, 4, 5], [6, 7, 8]], "kernel": [[0, 1], [2, 3]], "index": [0, 0]})
    assert status == 200, out
    assert out["line"] == "y[0, 0] = 0x0 + 1x1 + 3x2 + 4x3 = 19"
    assert out["value"] == 19
    assert [t["source"] for t in out["terms"]] == [[0, 0], [0, 1], [1, 0], [1, 1]]


@pytest.mark.parametrize("xs, ks, stride, padding, dilation, mode", CASES[1::2])
def test_explain_terms_rebuild_the_torch_value(srv, rng, xs, ks, stride, padding, dilation,
                                               mode):
    # Every product reads the input element named by its source (0 for a zero
    # pad), and they add up to PyTorch's output at that index.
    x = rng.integers(-9, 10, xs).astype(float)
    k = rng.integers(-3, 4, ks).astype(float)
    n = len(xs)
    dil = (dilation,) * n if isinstance(dilation, int) else dilation
    pad = padding if padding == "same" else _pairs(padding, ks, dil)
    ref = torch_conv(x[None], k[None, None], None, stride, pad, dilation, 1, mode)[0]
    for _ in range(3):
        idx = tuple(int(rng.integers(0, s)) for s in ref.shape)
        status, out, _ = call(srv, "POST", "/api/explain", {
            "x": x.tolist(), "kernel": k.tolist(), "index": list(idx), "stride": stride,
            "padding": padding, "dilation": dilation, "padding_mode": mode})
        assert status == 200, out
        assert out["value"] == pytest.approx(ref[idx], abs=1e-9)
        total = 0.0
        for t in out["terms"]:
            xv = 0.0 if t["source"] is None else x[tuple(t["source"])]
            assert t["x"] == xv and t["k"] == k[tuple(t["tap"])]
            total += xv * t["k"]
        assert total == pytest.approx(ref[idx], abs=1e-9)
        assert len(out["terms"]) == k.size


def test_explainer_matches_padded_copy_for_every_mode(rng):
    # The library's source mapping (no padded copy) against np.pad's.
    np_modes = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                "circular": "wrap"}
    x = rng.integers(0, 50, (5, 6)).astype(float)
    for mode, npm in np_modes.items():
        ex = Explainer(x, np.ones((3, 3)), padding=((2, 3), (4, 1)), padding_mode=mode,
                       dilation=(2, 1))
        xp = np.pad(x, ((2, 3), (4, 1)), mode=npm)
        for o in np.ndindex(ex.out_shape):
            for t in ex.terms(o):
                assert t.x == xp[t.position], (mode, o, t)


def test_explainer_refuses_like_conv():
    with pytest.raises(ValueError, match="must match"):
        Explainer(np.ones(3), np.ones((1, 1)))
    with pytest.raises(ValueError, match="`stride`"):
        Explainer(np.ones(3), np.ones(2), stride=0)
    with pytest.raises(ValueError, match="outside the output"):
        Explainer(np.ones(3), np.ones(2)).terms((2,))
    with pytest.raises(TypeError, match="`index`"):
        Explainer(np.ones(3), np.ones(2)).terms((0.5,))
    with pytest.raises(ValueError, match="`bias`"):
        Explainer(np.ones(3), np.ones(2), bias=float("nan"))


# --- the photo endpoints against SciPy -------------------------------------------------


def _png(data_url):
    import base64

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


@pytest.mark.parametrize("kernel, mode, rng_", [
    ("sobel-x", "zeros", "abs"), ("gaussian", "reflect", "clip"), ("sharpen", "replicate", "clip"),
    ("edge", "circular", "rescale"),
])
def test_filter_camera_equals_scipy(srv, kernel, mode, rng_):
    from ndconv import kernels

    cam = skimage.data.camera().astype(np.float64)
    k = kernels.get(kernel)
    status, out, _ = call(srv, "POST", "/api/filter", {
        "image": "camera", "kernel": kernel, "padding_mode": mode, "range": rng_})
    assert status == 200, out
    ref = ndimage.correlate(cam, k, mode=SCIPY_MODES[mode])
    if rng_ == "abs":
        ref = np.abs(ref)
    elif rng_ == "rescale":
        ref = (ref - ref.min()) * 255 / (ref.max() - ref.min())
    ref = np.clip(np.rint(ref), 0, 255)
    got = _png(out["png"]).astype(float)
    assert got.shape == ref.shape == tuple(out["shape"])
    # float32 inside filter_image: a value at .5 may round the other way
    assert np.abs(got - ref).max() <= 1 and np.mean(got != ref) < 1e-3


def test_filter_stride_dilation_shape_and_colour(srv):
    status, out, _ = call(srv, "POST", "/api/filter", {
        "image": "chelsea", "kernel": [[1, 0], [0, -1]], "padding": 0, "stride": 3,
        "dilation": 2})
    assert status == 200, out
    # floor((300 - 2*(2-1) - 1)/3) + 1 = 100, floor((451 - 3)/3) + 1 = 150
    assert out["shape"] == [100, 150] and out["channels"] == 3
    assert _png(out["png"]).shape == (100, 150, 3)


def test_pixel_sum_equals_scipy_and_shown_value(srv):
    from ndconv import kernels

    cam = skimage.data.camera().astype(np.float64)
    ref = ndimage.correlate(cam, kernels.get("sobel-x"), mode="constant")
    for idx in [(0, 0), (200, 311), (511, 511)]:
        status, out, _ = call(srv, "POST", "/api/pixel", {
            "image": "camera", "kernel": "sobel-x", "index": list(idx)})
        assert status == 200, out
        ch = out["channels"][0]
        assert ch["value"] == pytest.approx(ref[idx])
        assert ch["shown"] == int(np.clip(np.rint(ref[idx]), 0, 255))
        assert ch["line"].startswith(f"y[{idx[0]}, {idx[1]}] = ")
        assert ch["line"].endswith(f"= {int(ref[idx])}")
        valid = [s for s in out["sources"] if s is not None]
        assert len(out["sources"]) == 9 and all(0 <= i < 512 and 0 <= j < 512 for i, j in valid)


def test_pixel_colour_has_one_sum_per_channel(srv):
    cat = skimage.data.chelsea().astype(np.float64)
    status, out, _ = call(srv, "POST", "/api/pixel", {
        "image": "chelsea", "kernel": "edge", "index": [120, 200], "range": "abs"})
    assert status == 200, out
    k = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], float)
    for c, ch in enumerate(out["channels"]):
        v = (cat[119:122, 199:202, c] * k).sum()
        assert ch["channel"] == "RGB"[c] and ch["value"] == v and ch["shown"] == min(255, abs(v))


def test_grey_photo_and_image_png(srv):
    status, png, r = call(srv, "GET", "/api/image/coffee?grey=1")
    assert status == 200 and r.getheader("Content-Type") == "image/png"
    assert np.asarray(Image.open(io.BytesIO(png))).shape == (400, 600)
    status, out, _ = call(srv, "GET", "/api/photos")
    assert {"chelsea", "coffee", "camera", "astronaut"} <= {p["id"] for p in out["photos"]}


def test_kernel_bank_is_ndconv_kernels(srv):
    from ndconv import kernels

    status, out, _ = call(srv, "GET", "/api/kernels")
    assert status == 200
    assert [k["name"] for k in out["kernels"]] == kernels.names()
    for k in out["kernels"]:
        np.testing.assert_array_equal(k["kernel"], kernels.get(k["name"]))


def test_upload_png_and_jpeg_then_filter(srv):
    rgb = skimage.data.astronaut()[::4, ::4]
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt)
        status, out, _ = call(srv, "POST", "/api/upload", raw=buf.getvalue())
        assert status == 200, out
        assert (out["height"], out["width"], out["channels"]) == (128, 128, 3)
        status, f, _ = call(srv, "POST", "/api/filter", {"image": out["id"], "kernel": "identity"})
        assert status == 200
        if fmt == "PNG":  # lossless: identity gives the photo back
            np.testing.assert_array_equal(_png(f["png"]), rgb)


def test_large_upload_is_reduced_to_max_side():
    big = np.zeros((1500, 3000), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG")
    assert samples.decode_upload(buf.getvalue()).shape == (512, 1024)


def test_ecg_and_mri(srv):
    import pywt

    status, out, _ = call(srv, "GET", "/api/signal")
    assert status == 200 and out["x"] == pywt.data.ecg().tolist()
    status, out, _ = call(srv, "GET", "/api/volume")
    assert status == 200 and out["shape"] == [33, 41, 25]
    assert np.array(out["x"]).shape == (33, 41, 25)


def test_page_and_static_files(srv):
    status, html, r = call(srv, "GET", "/")
    assert status == 200 and b"ndconv explore" in html
    assert "default-src 'self'" in r.getheader("Content-Security-Policy")
    # nothing on the page points outside the server
    assert not re.search(rb"(src|href)=\"(https?:)?//", html)
    for name in ("explore.js", "explore.css"):
        status, body, _ = call(srv, "GET", f"/static/{name}")
        assert status == 200 and len(body) > 1000
        assert b"http://" not in body and b"https://" not in body
    status, _, r = call(srv, "HEAD", "/")
    assert status == 200


# --- bad requests ---------------------------------------------------------------------

GOOD = {"x": [[1, 2, 3], [4, 5, 6]], "kernel": [[1, 0], [0, 1]]}

BAD = [
    # (method, path, body (dict -> JSON, bytes -> as is), headers, status, fragment)
    ("POST", "/api/conv", b"{not json", None, 400, "not valid JSON"),
    ("POST", "/api/conv", b"\xff\xfe", None, 400, "UTF-8"),
    ("POST", "/api/conv", b"[1, 2]", None, 400, "JSON object"),
    ("POST", "/api/conv", b'{"x": [NaN], "kernel": [1]}', None, 400, "NaN"),
    ("POST", "/api/conv", b'{"x": [Infinity], "kernel": [1]}', None, 400, "Infinity"),
    ("POST", "/api/conv", b'{"x": [1e999], "kernel": [1]}', None, 400, "too large"),
    ("POST", "/api/conv", b'{"x": [' + b"9" * 5000 + b'], "kernel": [1]}', None, 400, "JSON"),
    ("POST", "/api/conv", b"[" * 100000, None, 400, "nested too deeply"),
    ("POST", "/api/conv", b"", None, 400, "not valid JSON"),
    ("POST", "/api/conv", {"kernel": [1]}, None, 400, "missing field 'x'"),
    ("POST", "/api/conv", dict(GOOD, strid=2), None, 400, "unknown field 'strid'"),
    ("POST", "/api/conv", dict(GOOD, x="abc"), None, 400, "`x` must be a nested list"),
    ("POST", "/api/conv", dict(GOOD, x=[[1, 2], [3]]), None, 400, "rectangular"),
    ("POST", "/api/conv", dict(GOOD, x=[[1, True], [3, 4]]), None, 400, "numbers only"),
    ("POST", "/api/conv", dict(GOOD, x=[[1, None], [3, 4]]), None, 400, "numbers only"),
    ("POST", "/api/conv", dict(GOOD, x=[[]]), None, 400, "empty"),
    ("POST", "/api/conv", dict(GOOD, x=[1, 2, 3]), None, 400, "must match"),
    ("POST", "/api/conv", dict(GOOD, x=[[[[[[[1]]]]]]], kernel=[[[[[[[1]]]]]]]), None, 400,
     "dims"),
    ("POST", "/api/conv", dict(GOOD, kernel=[[1, 1, 1, 1]]), None, 400, "larger than the padded"),
    ("POST", "/api/conv", dict(GOOD, stride=0), None, 400, "`stride` (=0) must be positive"),
    ("POST", "/api/conv", dict(GOOD, stride=1.5), None, 400, "`stride`"),
    ("POST", "/api/conv", dict(GOOD, stride=[1, 1, 1]), None, 400, "one entry per spatial"),
    ("POST", "/api/conv", dict(GOOD, stride=True), None, 400, "`stride`"),
    ("POST", "/api/conv", dict(GOOD, dilation=-1), None, 400, "`dilation`"),
    ("POST", "/api/conv", dict(GOOD, dilation=10**30), None, 400, "larger than the padded"),
    ("POST", "/api/conv", dict(GOOD, padding=-1), None, 400, "non-negative"),
    ("POST", "/api/conv", dict(GOOD, padding="middle"), None, 400, "`padding`"),
    ("POST", "/api/conv", dict(GOOD, padding="same", stride=2), None, 400, "same"),
    ("POST", "/api/conv", dict(GOOD, padding=10**6), None, 400, "padded input"),
    ("POST", "/api/conv", dict(GOOD, padding=10**30), None, 400, "padded input"),
    ("POST", "/api/conv", {"x": [1.0] * 100, "kernel": [1.0], "padding": 600_000}, None, 400,
     "at most"),
    ("POST", "/api/conv", {"x": np.ones((360, 360)).tolist(), "kernel": np.ones((64, 64)).tolist(),
                           "padding": 40}, None, 400, "multiply-adds"),
    ("POST", "/api/conv", dict(GOOD, padding_mode="mirror"), None, 400, "`padding_mode`"),
    ("POST", "/api/conv", dict(GOOD, padding=[1] * 100_000), None, 400, "(cut short)"),
    ("POST", "/api/conv", dict(GOOD, padding_mode=["zeros"]), None, 400, "`padding_mode`"),
    ("POST", "/api/conv", dict(GOOD, padding=5, padding_mode="reflect"), None, 400, "reflect"),
    ("POST", "/api/conv", dict(GOOD, bias="1"), None, 400, "`bias`"),
    ("POST", "/api/conv", {"x": [1e308, 1e308], "kernel": [1, 1]}, None, 400, "overflows"),
    ("POST", "/api/explain", GOOD, None, 400, "missing field 'index'"),
    ("POST", "/api/explain", dict(GOOD, index=[5, 0]), None, 400, "outside the output"),
    ("POST", "/api/explain", dict(GOOD, index=[0]), None, 400, "1 indices"),
    ("POST", "/api/explain", dict(GOOD, index="0,0"), None, 400, "`index`"),
    ("POST", "/api/filter", {"image": "nope", "kernel": "edge"}, None, 404, "`image`"),
    ("POST", "/api/filter", {"image": 3, "kernel": "edge"}, None, 400, "`image`"),
    ("POST", "/api/filter", {"image": "camera", "kernel": "blur"}, None, 400, "unknown kernel"),
    ("POST", "/api/filter", {"image": "camera", "kernel": "box:0"}, None, 400, "between 1"),
    ("POST", "/api/filter", {"image": "camera", "kernel": [1, 2]}, None, 400, "2-D"),
    ("POST", "/api/filter", {"image": "camera", "kernel": "edge", "range": "log"}, None, 400,
     "`range`"),
    ("POST", "/api/filter", {"image": "camera", "kernel": "edge", "grey": "yes"}, None, 400,
     "`grey`"),
    ("POST", "/api/filter", {"image": "camera", "kernel": "box:200", "padding": 0}, None, 400,
     "multiply-adds"),
    ("POST", "/api/pixel", {"image": "camera", "kernel": "edge", "index": [512, 0]}, None, 400,
     "outside the output"),
    ("POST", "/api/upload", b"not an image at all", None, 400, "PNG or JPEG"),
    ("POST", "/api/upload", b"", None, 400, "empty"),
    ("GET", "/api/conv", None, None, 405, "use POST"),
    ("PUT", "/api/conv", b"{}", None, 405, "use POST"),
    ("DELETE", "/", None, None, 405, "GET"),
    ("POST", "/", b"{}", None, 405, "GET"),
    ("GET", "/nope", None, None, 404, "no such path"),
    ("GET", "/static/../server.py", None, None, 404, "no such path"),
    ("GET", "/static/%2e%2e/server.py", None, None, 404, "no such path"),
    ("GET", "/api/image/..%2F..%2Fetc%2Fpasswd", None, None, 404, "`image`"),
    ("POST", "/nope", b"{}", None, 404, "no such path"),
    ("GET", "/api/kernels", None, {"Host": "evil.example:80"}, 403, "Host"),
    ("POST", "/api/conv", b"{}", {"Content-Length": "abc"}, 400, "Content-Length"),
    ("POST", "/api/conv", b"{}", {"Content-Length": "-5"}, 400, "Content-Length"),
]


@pytest.mark.parametrize("method, path, body, headers, status, fragment", BAD,
                         ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)])
def test_bad_request_is_one_line_4xx_and_server_goes_on(srv, method, path, body, headers,
                                                        status, fragment):
    raw = body if isinstance(body, bytes) else None
    js = body if isinstance(body, dict) else None
    got, out, r = call(srv, method, path, js, headers, raw)
    assert got == status, out
    assert r.getheader("Content-Type") == "application/json"
    assert set(out) == {"error"} and "\n" not in out["error"], out
    assert fragment in out["error"], out["error"]
    assert "Traceback" not in out["error"] and len(out["error"]) <= api.ApiError.MAX_LENGTH
    alive(srv)


def _raw(srv, data, read=True):
    s = socket.create_connection(srv.server_address[:2], timeout=10)
    s.sendall(data)
    if not read:
        return s
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out


def test_413_before_reading_the_body(srv):
    # A Content-Length over the limit is answered at once, with no body sent.
    out = _raw(srv, b"POST /api/conv HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n")
    assert out.startswith(b"HTTP/1.0 413") and b"at most 1,048,576" in out
    out = _raw(srv, b"POST /api/upload HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
    assert out.startswith(b"HTTP/1.0 413") and b"8,388,608" in out
    alive(srv)


def test_413_for_a_real_oversized_body_and_huge_arrays(srv):
    big = b'{"x": [' + b"1," * (api.MAX_BODY // 2) + b'1], "kernel": [1]}'
    status, out, _ = call(srv, "POST", "/api/conv", raw=big)
    assert status == 413 and "at most" in out["error"]
    status, out, _ = call(srv, "POST", "/api/conv", {"x": [0] * (api.MAX_X + 1), "kernel": [1]})
    assert status == 413 and "`x` has more than" in out["error"]
    status, out, _ = call(srv, "POST", "/api/conv", {"x": [0] * 10, "kernel": [[0] * 65] * 65})
    assert status == 413 and "`kernel`" in out["error"]
    alive(srv)


def test_413_for_an_upload_with_too_many_pixels(srv):
    # 8000 x 6000 one-bit pixels: a tiny file whose header says 48 megapixels.
    buf = io.BytesIO()
    Image.new("1", (8000, 6000)).save(buf, format="PNG")
    assert len(buf.getvalue()) < 100_000
    status, out, _ = call(srv, "POST", "/api/upload", raw=buf.getvalue())
    assert status == 413 and "48,000,000 pixels" in out["error"]
    alive(srv)


def test_413_for_an_upload_over_the_byte_limit(srv):
    status, out, _ = call(srv, "POST", "/api/upload", raw=b"\x89PNG" + b"0" * (8 << 20))
    assert status == 413
    alive(srv)


def test_other_formats_refused(srv):
    buf = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buf, format="GIF")
    status, out, _ = call(srv, "POST", "/api/upload", raw=buf.getvalue())
    assert status == 400 and "GIF" in out["error"]


def test_missing_content_length_and_garbage_request_line(srv):
    out = _raw(srv, b"POST /api/conv HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.0 411")
    out = _raw(srv, b"HELLO\r\n\r\n")  # HTTP/0.9 style: no status line, just the body
    assert out.startswith(b'{"error":"Bad request syntax')
    out = _raw(srv, b"GET / FOO/1.0\r\n\r\n")
    assert out == b'{"error":"Bad request version (\'FOO/1.0\')"}'
    out = _raw(srv, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n")
    assert out.startswith(b"HTTP/1.0 431") and b'{"error"' in out
    out = _raw(srv, b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.0 414")
    alive(srv)


def test_silent_client_is_dropped_and_others_are_served(srv, monkeypatch):
    monkeypatch.setattr(srvmod.Handler, "timeout", 0.5)
    idle = _raw(srv, b"POST /api/conv HTTP/1.1\r\nContent-Length: 50\r\n\r\n{", read=False)
    half = _raw(srv, b"GET / HTTP/1.1\r\n", read=False)
    alive(srv)  # served while the two wait
    t0 = time.monotonic()
    assert idle.recv(65536).startswith(b"HTTP/1.0 408")
    half.settimeout(5)
    assert half.recv(65536) == b""  # closed by the server within its timeout
    assert time.monotonic() - t0 < 5
    idle.close()
    half.close()
    alive(srv)


def test_fuzz_random_bodies(srv):
    rng = np.random.default_rng(12345)
    values = [0, 1, -1, 2, 1.5, 10**6, -(10**9), "same", "full", "zeros", "reflect", "x", "",
              None, True, [], [1], [[1]], [[1, 2], [3, 4]], [1, [2]], {"a": 1}, [0.5, 2],
              [[0, 1], [1, 0]], [[[1]]], 1e308, [1e308, -1e308]]
    fields = list(api.CONV_FIELDS) + ["index", "image", "junk"]
    for i in range(150):
        body = dict(GOOD)
        for _ in range(int(rng.integers(1, 4))):
            body[fields[rng.integers(len(fields))]] = values[rng.integers(len(values))]
        path = ["/api/conv", "/api/explain", "/api/filter", "/api/pixel"][i % 4]
        if i % 10 == 9:
            raw = bytes(rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8))
            status, out, _ = call(srv, "POST", path, raw=raw)
        else:
            status, out, _ = call(srv, "POST", path, body)
        assert status in (200, 400, 404, 413), (status, body, out)
        assert isinstance(out, dict) and (("error" in out) == (status != 200)), out
        if status != 200:
            assert "\n" not in out["error"] and "Traceback" not in out["error"]
    alive(srv)


def test_log_is_one_line_per_request_and_never_a_traceback(srv):
    before = len(srv.lines)
    call(srv, "GET", "/nope")
    call(srv, "POST", "/api/conv", raw=b"{bad")
    alive(srv)
    new = srv.lines[before:]
    assert len(new) == 3, new
    assert re.match(r'127\.0\.0\.1 "GET /nope" 404 \d+ ms$', new[0]), new[0]
    assert all("Traceback" not in l and "\n" not in l for l in srv.lines)


def test_internal_error_is_500_one_line_and_server_goes_on(srv, monkeypatch):
    def broken(body):
        raise RuntimeError("boom")

    monkeypatch.setitem(srvmod.Handler.POST, "/api/conv", lambda self, body: broken(body))
    status, out, _ = call(srv, "POST", "/api/conv", GOOD)
    assert status == 500 and out["error"] == "internal error: RuntimeError: boom"
    monkeypatch.undo()
    alive(srv)


def test_is_loopback():
    assert srvmod.is_loopback("127.0.0.1") and srvmod.is_loopback("::1")
    assert srvmod.is_loopback("localhost") and srvmod.is_loopback("127.1.2.3")
    assert not srvmod.is_loopback("0.0.0.0") and not srvmod.is_loopback("192.168.1.2")


# --- the command ------------------------------------------------------------------


def test_cli_serves_and_stops_on_sigint():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "ndconv", "explore", "--no-browser", "--port",
                          "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env)
    try:
        line = p.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:(\d+)/)", line)
        assert m, line
        c = http.client.HTTPConnection("127.0.0.1", int(m.group(2)), timeout=30)
        c.request("POST", "/api/conv", body=json.dumps(GOOD))
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["y"] == [[6, 8]]
        c.close()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines[-1] == "ndconv explore: stopped"
    assert lines[:-1] and all(l.startswith('127.0.0.1 "POST /api/conv" 200') for l in lines[:-1])


@pytest.mark.parametrize("args, fragment", [
    (["--host", "0.0.0.0"], "--allow-remote"),
    (["--host", "192.168.0.1"], "not a loopback address"),
    (["--port", "70000"], "0..65535"),
    (["--port", "x"], "0..65535"),
])
def test_cli_refuses(args, fragment):
    from test_cli import assert_refused, ndconv_inproc

    assert_refused(ndconv_inproc("explore", "--no-browser", *args), fragment,
                   prog="ndconv explore")


def test_cli_help_has_examples():
    from test_cli import ndconv_inproc

    r = ndconv_inproc("explore", "--help")
    assert r.returncode == 0 and "examples:" in r.stdout and "--allow-remote" in r.stdout
    assert "ndconv explore" in ndconv_inproc("--help").stdout


def test_cli_port_in_use_is_one_line():
    from test_cli import assert_refused, ndconv_inproc

    s = make_server("127.0.0.1", 0)
    try:
        r = ndconv_inproc("explore", "--no-browser", "--port", s.server_address[1])
    finally:
        s.server_close()
    assert_refused(r, "in use", prog="ndconv explore")
