"""The explorer's HTTP server: the standard library's ThreadingHTTPServer.

Why the standard library: the explorer is a single-user page on the loopback
interface with a handful of JSON endpoints, so ``http.server`` does all that is
needed without a new dependency, and owning the handler lets every limit be
checked where it belongs (Content-Length before the body is read, a socket
timeout on every connection, one log line per request, never a traceback).

Routes (see :mod:`ndconv.explore.api` for the JSON fields and limits):

======  ====================  ===========================================
GET     ``/``                 the page (``static/index.html``)
GET     ``/static/NAME``      its script and style sheet
GET     ``/api/kernels``      the kernel bank
GET     ``/api/photos``       the bundled photos
GET     ``/api/image/ID``     a photo or an upload as PNG (``?grey=1``)
GET     ``/api/signal``       the ECG (1-D)
GET     ``/api/volume``       the MRI volume (3-D)
POST    ``/api/conv``         N-d correlation of nested lists
POST    ``/api/explain``      the sum behind one output element
POST    ``/api/filter``       a photo filtered, as PNG
POST    ``/api/pixel``        the sum behind one output pixel of a photo
POST    ``/api/upload``       a PNG or JPEG file's bytes -> an image id
======  ====================  ===========================================

Answers: 200 with JSON (or the file); 400 bad field, 403 foreign Host header,
404 unknown path or image, 405 wrong method, 408 a body that does not arrive,
411 no Content-Length, 413 too large, 500 a bug (one line, no traceback),
503 a data package that is not installed.
"""

from __future__ import annotations

import http.server
import importlib.resources
import ipaddress
import json
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from ..core._memory import MemoryLimitError
from . import api, samples

__all__ = ["ExploreServer", "make_server", "is_loopback", "TIMEOUT"]

TIMEOUT = 10  #: seconds a connection may stay silent (headers or body) before it is dropped

_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "explore.js": "text/javascript; charset=utf-8",
    "explore.css": "text/css; charset=utf-8",
}

# Everything the page needs comes from this server; data: URLs carry the
# filtered images. The policy makes the browser refuse anything else.
_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and the loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _static(name: str) -> bytes:
    # One name per joinpath: Python 3.10's Traversable takes only one.
    return importlib.resources.files("ndconv.explore").joinpath("static").joinpath(name).read_bytes()


class Handler(http.server.BaseHTTPRequestHandler):
    """One request: route, check limits, answer JSON; never raise to the server."""

    server: ExploreServer
    server_version = "ndconv-explore"
    timeout = TIMEOUT  # StreamRequestHandler sets it on the socket
    # A request line or header longer than this is answered 414 / 431 by http.server.

    GET: dict[str, Callable[[Handler], Any]] = {
        "/api/kernels": lambda self: api.kernel_bank(),
        "/api/photos": lambda self: self.server.images.photos(),
        "/api/signal": lambda self: api.signal(),
        "/api/volume": lambda self: api.volume(),
    }
    POST: dict[str, Callable[[Handler, bytes], Any]] = {
        "/api/conv": lambda self, body: api.conv(api.parse_json(body)),
        "/api/explain": lambda self, body: api.explain(api.parse_json(body)),
        "/api/filter": lambda self, body: self.server.images.filter(api.parse_json(body)),
        "/api/pixel": lambda self, body: self.server.images.pixel(api.parse_json(body)),
        "/api/upload": lambda self, body: self.server.images.upload(body),
    }

    # --- plumbing ---------------------------------------------------------

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        t0 = getattr(self, "_t0", None)
        ms = "" if t0 is None else f" {(time.perf_counter() - t0) * 1000:.0f} ms"
        code = getattr(code, "value", code)
        self.server.log(f'{self.address_string()} "{self.command} '
                        f'{getattr(self, "path", "")[:200]}" {code}{ms}')

    def log_message(self, format: str, *args: Any) -> None:  # http.server's own notes (timeouts)
        self.server.log(f"{self.address_string()} " + (format % args)[:300])

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's errors (bad request line, 414, 431, 501) as JSON too."""
        text = message or self.responses.get(code, ("error",))[0]
        self._answer(code, {"error": api.ApiError(code, text).message})

    def _answer(
        self,
        code: int,
        payload: Any,
        content_type: str = "application/json",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        body = payload if isinstance(payload, bytes) else (
            json.dumps(payload, allow_nan=False, separators=(",", ":")).encode())
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", _CSP)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:  # the client went away: nothing to answer to
            self.close_connection = True
        self.close_connection = True

    def _error(self, code: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        self._answer(code, {"error": message}, headers=headers)
        self._drain(getattr(self, "_discard", 0))

    def _drain(self, n: int, most: int = 32 << 20) -> None:
        """Read and drop up to ``n`` bytes of a refused body, briefly."""
        try:
            self.connection.settimeout(1.0)
            left = min(n, most)
            while left > 0:
                chunk = self.rfile.read1(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def _host_ok(self) -> bool:
        # A loopback server answers only to its own names: a web page elsewhere
        # cannot reach it through DNS rebinding.
        if not self.server.check_host:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        return not host or host in self.server.allowed_hosts  # HTTP/1.0 may send none

    # --- methods ----------------------------------------------------------

    def do_GET(self) -> None:
        self._t0 = time.perf_counter()
        self._run(self._get)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self._t0 = time.perf_counter()
        self._run(self._post)

    def _not_allowed(self) -> None:
        self._t0 = time.perf_counter()
        self._run(lambda path: self._method_error(path))

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def _method_error(self, path: str) -> None:
        allowed = self._allowed(path)
        if not allowed:
            raise api.ApiError(404, f"no such path {path!r}")
        self._error(405, f"{self.command} is not allowed on {path}; use {' or '.join(allowed)}",
                    headers=[("Allow", ", ".join(allowed))])

    def _allowed(self, path: str) -> list[str]:
        if path in self.GET or path == "/" or self._static_name(path) or path.startswith("/api/image/"):
            return ["GET", "HEAD"]
        if path in self.POST:
            return ["POST"]
        return []

    @staticmethod
    def _static_name(path: str) -> str | None:
        name = path[len("/static/"):] if path.startswith("/static/") else None
        return name if name in _STATIC else None

    def _run(self, route: Callable[[str], None]) -> None:
        """Call ``route(path)``; turn every failure into one JSON answer."""
        try:
            path = urllib.parse.urlsplit(self.path).path
            if not self._host_ok():
                raise api.ApiError(403, f"Host {self.headers.get('Host')!r} is not this server's")
            route(path)
        except api.ApiError as exc:
            self._error(exc.status, exc.message)
        except samples.Missing as exc:
            self._error(503, api.ApiError(503, str(exc)).message)
        except MemoryLimitError as exc:
            self._error(413, api.ApiError(413, str(exc)).message)
        except (ValueError, TypeError) as exc:  # ndconv's own refusals
            self._error(400, api.ApiError(400, str(exc)).message)
        except (socket.timeout, TimeoutError):
            self._error(408, f"the body did not arrive within {TIMEOUT} s")
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception as exc:  # a bug in ndconv: one line, keep serving
            self.server.log(f"internal error on {self.command} {getattr(self, 'path', '')[:200]}: "
                            f"{type(exc).__name__}: {exc}"[:500])
            self._error(500, f"internal error: {type(exc).__name__}: "
                             f"{api.ApiError(500, str(exc)).message}"[:500])

    def _get(self, path: str) -> None:
        if path not in self.GET and path != "/" and not self._static_name(path) \
                and not path.startswith("/api/image/"):
            if path in self.POST:
                return self._method_error(path)
            raise api.ApiError(404, f"no such path {path!r}")
        if path == "/":
            return self._answer(200, _static("index.html"), _STATIC["index.html"])
        name = self._static_name(path)
        if name:
            return self._answer(200, _static(name), _STATIC[name])
        if path.startswith("/api/image/"):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            as_grey = query.get("grey", ["0"])[-1] in ("1", "true")
            image_id = urllib.parse.unquote(path[len("/api/image/"):])
            return self._answer(200, self.server.images.png(image_id, as_grey), "image/png")
        self._answer(200, self.GET[path](self))

    def _post(self, path: str) -> None:
        if path not in self.POST:
            if self._allowed(path):
                return self._method_error(path)
            raise api.ApiError(404, f"no such path {path!r}")
        limit = samples.MAX_UPLOAD_BYTES if path == "/api/upload" else api.MAX_BODY
        if self.headers.get("Transfer-Encoding"):
            raise api.ApiError(411, "send the body with a Content-Length, not chunked")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            raise api.ApiError(411, "the request needs a Content-Length header")
        length = lengths[0].strip()
        # Digits only (RFC 9112): int() would also take "+34" and "3_4"; and
        # two different lengths are the classic request-smuggling ambiguity.
        if not re.fullmatch(r"[0-9]{1,30}", length):
            raise api.ApiError(400, f"Content-Length {length[:40]!r} must be a non-negative int")
        if any(other.strip() != length for other in lengths[1:]):
            raise api.ApiError(400, f"the request has {len(lengths)} different Content-Length "
                                    "headers")
        n = int(length)
        if n > limit:
            # Refused before a byte of it is read; what the client sends anyway
            # is read and dropped after the answer, so that it sees the 413
            # rather than a reset connection.
            self._discard = n
            raise api.ApiError(413, f"the body has {n:,} bytes; at most {limit:,} are accepted "
                                    f"on {path}")
        body = self.rfile.read(n)
        if len(body) < n:
            raise api.ApiError(400, f"the body ended after {len(body)} of {n} bytes")
        self._answer(200, self.POST[path](self, body))


class ExploreServer(http.server.ThreadingHTTPServer):
    """A ThreadingHTTPServer holding the explorer's state.

    Parameters
    ----------
    address : (host, port)
        Port 0 picks a free port (see :attr:`url`).
    log : callable, optional
        Called with one line per request (default: nothing is logged).
    """

    daemon_threads = True  # a stuck client never keeps the process alive
    allow_reuse_address = True
    # socketserver's listen backlog of 5 made the kernel reset connections when
    # a burst of requests (the page's, or a script's) arrived faster than they
    # were accepted: 94 of 1,000 in bursts of 200.
    request_queue_size = 128

    server_address: tuple[Any, ...]  # (host, port), and flow and scope ids for IPv6
    log: Callable[[str], object]
    images: api.Images
    check_host: bool
    allowed_hosts: set[str]

    def __init__(self, address: tuple[str, int], log: Callable[[str], object] | None = None) -> None:
        host = address[0]
        if ":" in host:  # IPv6
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.log = log or (lambda line: None)
        self.images = api.Images()
        threading.Thread(target=self._warm_up, daemon=True).start()
        port = self.server_address[1]
        self.check_host = is_loopback(host)
        names = {f"[{host}]" if ":" in host else host, "localhost", "127.0.0.1", "[::1]"}
        self.allowed_hosts = {f"{h}:{port}" for h in names} | (names if port == 80 else set())

    def _warm_up(self) -> None:
        try:
            api.warm_up()
        except Exception as exc:  # only a head start; a real request would say more
            self.log(f"warm-up failed: {type(exc).__name__}: {exc}"[:300])

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print a traceback; the handler already answered.
        import sys

        exc = sys.exc_info()[1]
        self.log(f"{client_address[0]} connection error: {type(exc).__name__}: {exc}"[:300])


def make_server(
    host: str = "127.0.0.1", port: int = 0, log: Callable[[str], object] | None = None
) -> ExploreServer:
    """An :class:`ExploreServer` bound to ``host:port`` (not yet serving).

    Call ``serve_forever()`` on it (in a thread, for tests) and ``shutdown()``
    then ``server_close()`` to stop.
    """
    return ExploreServer((host, port), log=log)
