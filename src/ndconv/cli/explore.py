"""``ndconv explore``: serve the playground page on this machine until Ctrl-C."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ._errors import UsageError

if TYPE_CHECKING:
    import argparse

HELP = "a local web page to try kernels on photos, an ECG and an MRI volume with ndconv"

EXAMPLES = """\
The page and its JSON API (POST /api/conv, /api/explain, /api/filter, ...) are
served from this machine; nothing is loaded from the network. It listens on
127.0.0.1 only unless --host names another address, which also needs
--allow-remote (anyone who can reach that address can then use it). One log
line per request goes to stderr; Ctrl-C stops the server (exit code 0).

examples:
  ndconv explore                     opens http://127.0.0.1:8765/ in a browser
  ndconv explore --port 0            a free port, printed
  ndconv explore --no-browser --port 9000
  curl -s -d '{"x": [[0,1,2],[3,4,5],[6,7,8]], "kernel": [[0,1],[2,3]]}' \\
       http://127.0.0.1:8765/api/conv
"""


def _port(text: str) -> int:
    import argparse

    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} must be a port number 0..65535 (0: any free port)")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=_port, default=8765,
                   help="TCP port (default 8765; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host that other machines can reach")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    p.add_argument("--quiet", action="store_true", help="no log line per request")


def run(args: argparse.Namespace) -> None:
    import signal
    import threading

    from ..explore import is_loopback, make_server

    if not is_loopback(args.host) and not args.allow_remote:
        raise UsageError(
            f"--host {args.host!r} is not a loopback address: other machines could use "
            "the server; add --allow-remote if that is what you want"
        )

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    server = make_server(args.host, args.port, log=None if args.quiet else log)
    if not is_loopback(args.host):
        log(f"ndconv explore: warning: listening on {args.host}, reachable from other machines")
    print(f"ndconv explore: serving {server.url} (Ctrl-C stops it)", flush=True)
    if not args.no_browser:
        import webbrowser

        # A text-mode browser would take over the terminal: open it beside the server.
        threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT explicitly too: a shell starts background jobs with it ignored.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("ndconv explore: stopped", file=sys.stderr, flush=True)
