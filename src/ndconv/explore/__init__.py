"""``ndconv explore``: a local playground whose every number is computed by ndconv.

A web page served from this machine (loopback only by default) where one
picks a bundled photo or uploads one, picks a kernel from
:mod:`ndconv.kernels` or types one, sets stride, padding, dilation and padding
mode, and sees ndconv's output; clicking an output pixel shows the sum of
products behind it (:class:`ndconv.explain.Explainer`). A 1-D mode runs on
PyWavelets' ECG and a 3-D mode on nibabel's MRI volume.

* :mod:`ndconv.explore.api`: the JSON endpoints as plain functions, and their limits;
* :mod:`ndconv.explore.server`: the HTTP server (the standard library's
  ``ThreadingHTTPServer``) and its routes;
* :mod:`ndconv.explore.samples`: photos, uploads, the ECG and the MRI volume;
* ``static/``: the page (HTML, CSS and JavaScript, nothing loaded from elsewhere).

Examples
--------
>>> import threading, json, urllib.request
>>> from ndconv.explore import make_server
>>> srv = make_server("127.0.0.1", 0)
>>> t = threading.Thread(target=srv.serve_forever, daemon=True); t.start()
>>> req = urllib.request.Request(srv.url + "api/conv", method="POST",
...     data=json.dumps({"x": [[0, 1, 2], [3, 4, 5], [6, 7, 8]],
...                      "kernel": [[0, 1], [2, 3]]}).encode())
>>> json.load(urllib.request.urlopen(req))["y"]
[[19.0, 25.0], [37.0, 43.0]]
>>> srv.shutdown(); srv.server_close()
"""

from .server import ExploreServer, is_loopback, make_server

__all__ = ["ExploreServer", "is_loopback", "make_server"]
