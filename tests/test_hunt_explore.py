"""Attacks on ``ndconv explore``'s server, over real sockets on a loopback port.

Every bad request must be a one-line JSON 4xx (never a 500, never a
traceback on stderr) and the server must keep answering, correctly, under
idle connections and concurrent clients. Values are checked against SciPy
and Pillow, never against the server's own code.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image, ImageOps
from scipy import ndimage

from ndconv.explore import server as srvmod
from test_explore import srv  # noqa: F401  (the server on a free loopback port)

GOOD = b'{"x": [1, 2, 3], "kernel": [1, 1]}'


def raw(srv, data, timeout=15):
    """The whole answer to the bytes ``data`` sent on a fresh connection."""
    c = socket.create_connection(srv.server_address[:2], timeout=timeout)
    c.sendall(data)
    out = b""
    while chunk := c.recv(65536):
        out += chunk
    c.close()
    return out


def status_and_json(answer):
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def post(srv, path, body, headers=None):
    c = http.client.HTTPConnection(*srv.server_address[:2], timeout=60)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    c.request("POST", path, body=data, headers=headers or {})
    r = c.getresponse()
    payload = r.read()
    c.close()
    return r.status, json.loads(payload) if r.getheader("Content-Type") == "application/json" \
        else payload


def alive(srv):
    assert post(srv, "/api/conv", GOOD) == (200, {"y": [3.0, 5.0], "shape": [2],
                                                  "padding": [[0, 0]]})


def conv_request(header_lines):
    return b"POST /api/conv HTTP/1.1\r\n" + header_lines + b"\r\n" + GOOD


# ------------------------------------------------------------ framing

@pytest.mark.parametrize("lines, status", [
    (b"Content-Length: 34\r\n", 200),
    (b"Content-Length:  34 \r\n", 200),                       # OWS is allowed
    (b"Content-Length: 34\r\nContent-Length: 34\r\n", 200),   # repeated, equal
    (b"Content-Length: +34\r\n", 400),                        # int() took these
    (b"Content-Length: 3_4\r\n", 400),
    (b"Content-Length: 34\r\nContent-Length: 5\r\n", 400),    # smuggling ambiguity
    (b"Content-Length: 5\r\nContent-Length: 34\r\n", 400),
    (b"Content-Length: 34, 34\r\n", 400),
    (b"Content-Length: 0x22\r\n", 400),
    (b"Content-Length: " + b"9" * 5000 + b"\r\n", 400),
    (b"Transfer-Encoding: chunked\r\nContent-Length: 34\r\n", 411),
    (b"Expect: 100-continue\r\nContent-Length: 34\r\n", 200),
])
def test_content_length_is_digits_and_unambiguous(srv, lines, status):
    got, out = status_and_json(raw(srv, conv_request(lines)))
    assert got == status, out
    if status != 200:
        assert set(out) == {"error"} and "\n" not in out["error"]
    alive(srv)


def test_chunked_body_is_refused_not_read_as_json(srv):
    body = b"22\r\n" + GOOD + b"\r\n0\r\n\r\n"
    got, out = status_and_json(raw(srv, b"POST /api/conv HTTP/1.1\r\n"
                                        b"Transfer-Encoding: chunked\r\n\r\n" + body))
    assert got == 411 and "chunked" in out["error"]
    alive(srv)


@pytest.mark.parametrize("target", [
    b"http://evil.example/api/kernels", b"//api/kernels", b"/api/kernels/", b"/API/kernels",
    b"/api/kernels%00", b"/static/index.html/../../server.py", b"/static//index.html",
    b"/static/%69ndex.html", b"/static/./index.html", b"/static/..%2f..%2fapi.py",
    b"/static/" + b"../" * 20 + b"etc/passwd", b"/static/C:\\Windows\\win.ini",
    b"/static/%2fetc%2fpasswd", b"/static/index.html%00.py", b"/\xff\xfe",
])
def test_odd_request_targets_are_404_or_the_real_resource(srv, target):
    answer = raw(srv, b"GET " + target + b" HTTP/1.1\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    code = int(head.split()[1])
    assert code in (200, 404), answer[:300]
    if code == 404:
        assert set(json.loads(body)) == {"error"}
    else:  # the absolute form, and "//" that http.server collapses to "/", name the bank
        assert target.startswith((b"http://", b"//")) and b'"kernels"' in body
    assert b"root:" not in body and b"import " not in body


@pytest.mark.parametrize("host, status", [
    (b"evil.example", 403), (b"127.0.0.1.evil.example", 403), (b"localhost.", 403),
    (b"LOCALHOST", 200), (b"", 200),
])
def test_host_header(srv, host, status):
    port = str(srv.server_address[1]).encode()
    value = host + b":" + port if host else b""
    answer = raw(srv, b"GET /api/kernels HTTP/1.1\r\nHost: " + value + b"\r\n\r\n")
    assert int(answer.split()[1]) == status


# ------------------------------------------------------------ JSON and kernels

@pytest.mark.parametrize("body, fragment", [
    ({"image": "camera", "kernel": "gaussian:1e308"}, "sigma"),     # was a 500 (OverflowError)
    ({"image": "camera", "kernel": "gaussian:1e-400"}, "sigma"),
    ({"image": "camera", "kernel": "gaussian:-0.0"}, "sigma"),
    ({"image": "camera", "kernel": "box:-0"}, "box"),
])
def test_bank_kernel_arguments_at_the_extremes(srv, body, fragment):
    status, out = post(srv, "/api/filter", body)
    assert status == 400 and fragment in out["error"], out
    alive(srv)


@pytest.mark.parametrize("bias", [10**30, 10**400, -(10**400)], ids=["1e30", "1e400", "-1e400"])
def test_huge_integer_bias_names_bias(srv, bias):
    # NumPy's isfinite refused an int beyond int64 with a message about ufuncs
    status, out = post(srv, "/api/conv", {"x": [1, 2, 3], "kernel": [1], "bias": bias})
    if bias == 10**30:
        assert status == 200 and out["y"] == [1e30 + 1, 1e30 + 2, 1e30 + 3]
    else:
        assert status == 400 and "`bias`" in out["error"], out


@pytest.mark.parametrize("body", [
    {"x": [[1e-320, 5e-324]], "kernel": [[1e308, 1e308]]},   # denormals times huge
    {"x": [-0.0, 0.0], "kernel": [-0.0]},
    {"x": [1, 2, 3], "kernel": [1], "stride": 10**30},
    {"x": [1, 2, 3], "kernel": [1], "dilation": 10**30},
])
def test_extreme_but_valid_numbers_equal_scipy(srv, body):
    status, out = post(srv, "/api/conv", body)
    assert status == 200, out
    x, k = np.array(body["x"], float), np.array(body["kernel"], float)
    want = ndimage.correlate(x, k, mode="constant",
                             origin=tuple(-(s // 2) if s % 2 == 0 else 0 for s in k.shape))
    valid = tuple(slice(0, n - m + 1, min(body.get("stride", 1), 10**9))
                  for n, m in zip(x.shape, k.shape))
    np.testing.assert_array_equal(out["y"], want[valid])


def test_deep_and_wide_json_and_many_keys(srv):
    for body in (b'{"x": ' + b"[" * 50_000 + b"]" * 50_000 + b', "kernel": [1]}',
                 b'{' + b",".join(b'"k%d": 1' % i for i in range(60_000)) + b'}',
                 b'{"x": [1], "kernel": [1], "x": "dup"}'):
        status, out = post(srv, "/api/conv", body)
        assert 400 <= status < 500 and "\n" not in out["error"], out
    alive(srv)


# ------------------------------------------------------------ uploads

def _png(array, **kw):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", **kw)
    return buf.getvalue()


def _get_image(srv, image_id):
    c = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
    c.request("GET", f"/api/image/{image_id}")
    data = c.getresponse().read()
    c.close()
    return np.asarray(Image.open(io.BytesIO(data)))


def test_16_bit_grey_upload_is_scaled_not_clipped(srv):
    # convert("L") clipped every value over 255: the image came back white
    wide = (np.arange(30 * 40).reshape(30, 40) * 54).astype(np.uint16)
    status, out = post(srv, "/api/upload", _png(wide))
    assert status == 200 and out["channels"] == 1
    got = _get_image(srv, out["id"])
    np.testing.assert_array_equal(got, np.rint(wide / 257).astype(np.uint8))


def test_exif_orientation_is_applied_as_viewers_do(srv):
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :10] = 255  # a white band on the left
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif)
    status, out = post(srv, "/api/upload", buf.getvalue())
    assert status == 200 and (out["height"], out["width"]) == (40, 20), out
    want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    np.testing.assert_array_equal(_get_image(srv, out["id"]), want)
    assert want[0, -1].tolist() == [255, 255, 255]  # the band is now on top


@pytest.mark.parametrize("make", ["cmyk-jpeg", "apng", "palette-alpha", "la", "truncated-jpeg",
                                  "bomb-png", "one-bit", "progressive"])
def test_odd_uploads_are_decoded_or_refused(srv, make):
    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    if make == "cmyk-jpeg":
        Image.fromarray(rgb).convert("CMYK").save(buf, format="JPEG")
    elif make == "apng":
        Image.fromarray(rgb).save(buf, format="PNG", save_all=True,
                                  append_images=[Image.fromarray(255 - rgb)])
    elif make == "palette-alpha":
        Image.fromarray(rgb).convert("P").save(buf, format="PNG", transparency=0)
    elif make == "la":
        Image.fromarray(rgb).convert("LA").save(buf, format="PNG")
    elif make == "truncated-jpeg":
        Image.fromarray(rgb).save(buf, format="JPEG")
        buf = io.BytesIO(buf.getvalue()[:400])
    elif make == "bomb-png":
        Image.new("L", (7000, 7000)).save(buf, format="PNG")  # 49 MP of zeros
    elif make == "one-bit":
        Image.fromarray(rgb[..., 0] > 127).save(buf, format="PNG")
    else:
        Image.fromarray(rgb).save(buf, format="JPEG", progressive=True)
    status, out = post(srv, "/api/upload", buf.getvalue())
    if make == "truncated-jpeg":
        assert status == 400 and "PNG or JPEG" in out["error"]
    elif make == "bomb-png":
        assert status == 413 and "pixels" in out["error"]
    else:
        assert status == 200, out
        assert (out["height"], out["width"]) == (48, 64)
        got = _get_image(srv, out["id"])
        first = Image.open(io.BytesIO(buf.getvalue()))  # frame 0, as Pillow reads it
        want = np.asarray(first.convert("L" if first.mode in ("1", "L", "LA") else "RGB"))
        np.testing.assert_array_equal(got, want)
    alive(srv)


# ------------------------------------------------------------ load

def test_idle_connections_do_not_stop_service(srv, monkeypatch):
    monkeypatch.setattr(srvmod.Handler, "timeout", 2)
    idle = []
    try:
        for i in range(120):  # bounded; loopback only
            c = socket.create_connection(srv.server_address[:2], timeout=10)
            c.sendall(b"POST /api/conv HTTP/1.1\r\nContent-Length: 100\r\n\r\n{" if i % 2
                      else b"GET / HTTP/1.1\r\n")
            idle.append(c)
        t0 = time.monotonic()
        alive(srv)
        assert time.monotonic() - t0 < 5
        # each idle one is answered 408 or closed within the timeout
        for c in idle:
            c.settimeout(15)
            data = c.recv(65536)
            assert data == b"" or data.startswith(b"HTTP/1.0 408"), data[:80]
    finally:
        for c in idle:
            c.close()
    alive(srv)


def test_concurrent_clients_get_their_own_correct_answers(srv):
    rng = np.random.default_rng(7)
    jobs = [(rng.integers(-9, 9, (7, 8)).astype(float), rng.integers(-3, 3, (2, 3)).astype(float))
            for _ in range(40)]
    errors = []

    def conv(i):
        x, k = jobs[i]
        status, out = post(srv, "/api/conv", {"x": x.tolist(), "kernel": k.tolist()})
        want = ndimage.correlate(x, k, mode="constant", origin=(-1, -1))[:6, :6]
        if status != 200 or not np.array_equal(out["y"], want):
            errors.append((i, status, out))

    def filt(i):
        kernel = ["edge", "sharpen", "box:3", "sobel-x"][i % 4]
        status, out = post(srv, "/api/filter", {"image": "camera", "kernel": kernel,
                                                "padding": 0, "range": "clip"})
        if status != 200 or out["shape"] != [510, 510]:
            errors.append((kernel, status, str(out)[:200]))
        else:
            results.setdefault(kernel, set()).add(out["png"])

    def guarded(fn, i):
        # a reset connection is a failure too, not only a wrong answer
        try:
            fn(i)
        except Exception as exc:
            errors.append((fn.__name__, i, repr(exc)))

    results = {}
    threads = [threading.Thread(target=guarded, args=(conv, i)) for i in range(40)]
    threads += [threading.Thread(target=guarded, args=(filt, i)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert all(len(v) == 1 for v in results.values()), {k: len(v) for k, v in results.items()}
    alive(srv)


def test_nothing_reaches_stderr(srv, capfd):
    for data in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40,  # a TLS hello
                 b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 70000 + b"\r\n\r\n",
                 b"POST /api/upload HTTP/1.1\r\nContent-Length: 10\r\n\r\n\x89PNG",
                 b"\r\n\r\n", b"GET"):
        try:
            raw(srv, data, timeout=15)
        except OSError:
            pass
    s = socket.create_connection(srv.server_address[:2])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.sendall(b"POST /api/conv HTTP/1.1\r\nContent-Length: 34\r\n\r\n")
    s.close()  # reset mid-request
    time.sleep(0.5)
    alive(srv)
    err = capfd.readouterr().err
    assert err == "", err
    assert all("Traceback" not in line and "internal error" not in line for line in srv.lines)


def test_a_burst_of_connections_is_served_not_reset(srv):
    # socketserver's default listen backlog of 5: 94 of 1,000 requests arriving
    # in bursts of 200 were reset by the kernel before the server accepted them.
    errors = []

    def one():
        try:
            status, _ = post(srv, "/api/conv", GOOD)
            if status != 200:
                errors.append(status)
        except Exception as exc:
            errors.append(repr(exc))

    for _ in range(3):  # bounded: 3 bursts of 200, loopback only
        threads = [threading.Thread(target=one) for _ in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, (len(errors), errors[:3])
    alive(srv)
