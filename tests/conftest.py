"""Shared test helpers: tolerances, the PyTorch reference, hypothesis settings.

The machine running the suite is small and shared, so hypothesis runs few,
small examples by default; ``HYPOTHESIS_PROFILE=thorough`` runs many more.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# tests/ on the path so that ``from reference import conv_ref`` works in every file.
sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile(
    "default", max_examples=20, deadline=None, derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: Largest allowed ``max|actual - ref| / max|ref|`` per dtype (the issue's bounds).
#: Half precision is computed in float32 and rounded once, so its bound is
#: about half its epsilon (float16 eps 9.8e-4, bfloat16 7.8e-3); integers
#: are exact.
TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5,
       np.dtype(np.complex128): 1e-10, np.dtype(np.complex64): 1e-5,
       np.dtype(np.float16): 1e-3}
TOL.update({np.dtype(t): 0.0 for t in (np.int8, np.int16, np.int32, np.int64,
                                       np.uint8, np.uint16, np.uint32, np.uint64)})
try:
    import ml_dtypes

    BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
    TOL[BFLOAT16] = 8e-3
except ImportError:  # pragma: no cover - ml_dtypes is in the test extra
    BFLOAT16 = None


def assert_close(actual, ref, dtype=None, what="result", magnitude=None):
    """Assert same shape and dtype and ``max|actual - ref| <= tol * scale``.

    ``scale`` is ``max|ref|``. When the exact result cancels (a bias gradient
    summing random signs, say), no floating-point sum can meet a bound relative
    to the small result, so ``magnitude`` (the same computation on absolute
    values, ``sum |a| |b|``: the classic error-bound scale) may be given;
    ``scale`` is then the larger of the two. ``ref`` should be computed in
    float64 (also for float32 inputs) so that the bound measures ndconv alone.
    """
    actual = np.asarray(actual)
    cplx = np.iscomplexobj(actual) or np.iscomplexobj(ref)
    wide = np.complex128 if cplx else np.float64
    ref = np.asarray(ref, dtype=wide)
    dtype = np.dtype(dtype or actual.dtype)
    assert actual.shape == ref.shape, f"{what}: shape {actual.shape} != {ref.shape}"
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype} != {dtype}"
    scale = max(float(np.max(np.abs(ref), initial=0.0)), 1e-30)
    if magnitude is not None:
        scale = max(scale, float(np.max(np.abs(magnitude), initial=0.0)))
    err = float(np.max(np.abs(actual.astype(wide) - ref), initial=0.0))
    assert err <= TOL[dtype] * scale, (
        f"{what}: max abs error {err:.3g} > {TOL[dtype]:g} * max|ref| ({scale:.3g})"
    )


# --------------------------------------------------------------------------
# the PyTorch reference (computed in float64 from the same numbers)


def _wide(a):
    """``a`` in float64, or complex128 if complex: the reference's precision."""
    return np.asarray(a, np.complex128 if np.iscomplexobj(a) else np.float64)


def torch_pads(pairs):
    """``F.pad``'s flat list (last dim first) for ``((lo, hi), ...)``."""
    return [v for lo, hi in reversed(pairs) for v in (lo, hi)]


def torch_conv(x, w, b, stride, padding, dilation, groups, padding_mode, gy=None):
    """``F.convNd`` the way ``nn.ConvNd`` does it; with ``gy`` also the gradients.

    ``padding`` is whatever ndconv was given except that pairs, 'full' and every
    non-zeros mode must already be resolved into ``((lo, hi), ...)``; torch
    handles ints, per-dim tuples, 'valid' and 'same' itself. Returns float64
    arrays ``out`` or ``(out, gx, gw, gb)``; unbatched input is batched here and
    unbatched again, so torch's unbatched code paths are not relied upon.
    """
    import torch
    import torch.nn.functional as F

    n = w.ndim - 2
    unbatched = x.ndim == n + 1
    xt = torch.tensor(_wide(x)[None] if unbatched else _wide(x),
                      requires_grad=True)
    wt = torch.tensor(_wide(w), requires_grad=True)
    bt = None if b is None else torch.tensor(_wide(b), requires_grad=True)
    fn = getattr(F, f"conv{n}d")
    is_pairs = isinstance(padding, tuple) and padding and isinstance(padding[0], tuple)
    if is_pairs:
        mode = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
                "circular": "circular"}[padding_mode]
        out = fn(F.pad(xt, torch_pads(padding), mode=mode), wt, bt, stride, 0, dilation, groups)
    else:
        assert padding_mode == "zeros"
        out = fn(xt, wt, bt, stride, padding, dilation, groups)
    return _torch_result(out, xt, wt, bt, gy, unbatched)


def torch_conv_transpose(x, w, b, stride, padding, output_padding, groups, dilation, gy=None):
    """``F.conv_transposeNd`` in float64; with ``gy`` also the gradients."""
    import torch
    import torch.nn.functional as F

    n = w.ndim - 2
    unbatched = x.ndim == n + 1
    xt = torch.tensor(_wide(x)[None] if unbatched else _wide(x),
                      requires_grad=True)
    wt = torch.tensor(_wide(w), requires_grad=True)
    bt = None if b is None else torch.tensor(_wide(b), requires_grad=True)
    fn = getattr(F, f"conv_transpose{n}d")
    out = fn(xt, wt, bt, stride, padding, output_padding, groups, dilation)
    return _torch_result(out, xt, wt, bt, gy, unbatched)


def _torch_result(out, xt, wt, bt, gy, unbatched):
    import torch

    if gy is None:
        o = out.detach().numpy()
        return o[0] if unbatched else o
    g = _wide(gy)
    out.backward(torch.tensor(g[None] if unbatched else g))
    o, gx = out.detach().numpy(), xt.grad.numpy()
    if unbatched:
        o, gx = o[0], gx[0]
    gb = None if bt is None else bt.grad.numpy()
    return o, gx, wt.grad.numpy(), gb


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --------------------------------------------------------------------------
# the browser (Playwright driving Debian's Chromium; scripts/install-system-deps.sh)

CHROMIUM = os.environ.get("NDCONV_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium for the whole session.

    Missing Chromium or Playwright skips the browser tests on a developer's
    machine, with the reason, but fails them under CI (``CI`` set), where the
    README's test command installs both and they must run.
    """
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[test]')"
    if reason is None and not os.path.exists(CHROMIUM):
        reason = f"no Chromium at {CHROMIUM} (bash scripts/install-system-deps.sh)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import expect

    # A page request whose kernels numba has not compiled yet (a clean clone's
    # first run: each stride/dilation/dtype path compiles once, 3-12 s, while the
    # explorer's warm-up thread compiles others) outlasts Playwright's 5 s; CI
    # failed once so (a click's readout after 5 s). Waits end as soon as they hold.
    expect.set_options(timeout=30_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page at 1280 px wide that records console errors and requests.

    ``page.console_errors`` lists console messages of type error and uncaught
    page errors; ``page.requested`` lists every URL the page asked for.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.console_errors = []
    pg.requested = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    pg.on("request", lambda r: pg.requested.append(r.url))
    yield pg
    context.close()
