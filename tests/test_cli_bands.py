"""``ndconv filter`` writing a TIFF band by band while it filters (images.TiffBands):
the same bytes as writing the finished image, and the files guarantee kept
(a failure or an interrupt in the middle of the bands, or a failing write,
leaves no output, no temporary file and the old output intact)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from ndconv import images
from ndconv.images import kernels
from ndconv.io import _files
from test_cli import assert_refused, ndconv_inproc, snapshot

tifffile = pytest.importorskip("tifffile")


def _save(path, a):
    tifffile.imwrite(path, a, photometric="rgb" if a.ndim == 3 else "minisblack",
                     extrasamples=("unassalpha",) if a.ndim == 3 and a.shape[2] == 4 else None)


def _expected_bytes(result):
    buf = io.BytesIO()
    images.write_image(result, buf, "TIFF")
    return buf.getvalue()


IMAGES = {
    "rgb8": lambda r: r.integers(0, 256, (67, 53, 3), dtype=np.uint8),
    "rgba8": lambda r: r.integers(0, 256, (41, 37, 4), dtype=np.uint8),
    "gray16": lambda r: r.integers(0, 65536, (59, 47), dtype=np.uint16),
    "gray8": lambda r: r.integers(0, 256, (33, 71), dtype=np.uint8),
    "grayf32": lambda r: r.standard_normal((45, 39)).astype(np.float32),
    "grayf64": lambda r: r.standard_normal((45, 39)) * 1e300,  # beyond float32's range
}


@pytest.mark.parametrize("kind", sorted(IMAGES))
@pytest.mark.parametrize("kernel, extra", [
    ("sharpen", ()),                      # the fused direct pass
    ("box:9", ("--mode", "reflect")),     # the fused separable pass
    ("gaussian:8", ()),                   # bands through conv (FFT / direct)
    ("edge", ("--range", "rescale", "--stride", "2", "--padding", "valid")),  # two passes over the bands
])
def test_streamed_tiff_is_the_written_image(tmp_path, kind, kernel, extra):
    rng = np.random.default_rng(len(kind) + len(kernel))
    a = IMAGES[kind](rng)
    _save(tmp_path / "in.tif", a)
    r = ndconv_inproc("filter", "in.tif", "out.tif", "--kernel", kernel, "--tile-rows", "7",
                      *extra, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # the library call, written once finished, is the reference
    mode = extra[1] if extra[:1] == ("--mode",) else "zeros"
    kw = dict(padding_mode=mode, alpha=a.ndim == 3 and a.shape[2] == 4)
    if "--range" in extra:
        kw.update(value_range="rescale", stride=2, padding="valid")
    want = images.filter_image(a, kernels.get(kernel), **kw)
    if want.ndim == 3 and want.shape[2] == 1:
        want = want[:, :, 0]
    assert (tmp_path / "out.tif").read_bytes() == _expected_bytes(want)
    back = tifffile.imread(tmp_path / "out.tif")
    assert back.dtype == want.dtype
    np.testing.assert_array_equal(back, want)
    assert sorted(os.listdir(tmp_path)) == ["in.tif", "out.tif"]


def _with_old_output(tmp_path, a):
    _save(tmp_path / "in.tif", a)
    (tmp_path / "out.tif").write_bytes(b"the old output")
    return snapshot(tmp_path)


def test_overflow_in_a_late_band_leaves_the_old_output(tmp_path):
    # float64 values that overflow only in the last rows: the first bands are
    # filtered and written before the error.
    a = np.ones((60, 30))
    a[-3:] = 1e308
    np.save(tmp_path / "ones.npy", np.ones((3, 3)))  # sums of 9e308: inf
    before = _with_old_output(tmp_path, a)
    r = ndconv_inproc("filter", "in.tif", "out.tif", "--kernel", "ones.npy", "--tile-rows", "5",
                      "--force", cwd=tmp_path)
    assert_refused(r, "overflows")
    assert snapshot(tmp_path) == before  # no new output, no .part file


@pytest.mark.parametrize("exc", [KeyboardInterrupt, MemoryError])
def test_interrupt_in_the_middle_of_the_bands(tmp_path, monkeypatch, exc):
    calls = []
    real = images.TiffBands.band

    def band(self, out, r0, r1):
        calls.append(r0)
        if len(calls) == 3:
            raise exc()
        real(self, out, r0, r1)

    monkeypatch.setattr(images.TiffBands, "band", band)
    a = np.random.default_rng(0).integers(0, 256, (80, 40, 3), dtype=np.uint8)
    before = _with_old_output(tmp_path, a)
    r = ndconv_inproc("filter", "in.tif", "out.tif", "--kernel", "sharpen", "--tile-rows", "8",
                      "--force", cwd=tmp_path)
    assert r.returncode != 0 and len(calls) == 3
    assert snapshot(tmp_path) == before


def test_a_failing_write_stops_the_filtering(tmp_path, monkeypatch):
    real = _files.CheckedFile.write

    def write(self, data):
        if self.written > 20_000:
            raise OSError(28, "No space left on device", self.name)
        return real(self, data)

    monkeypatch.setattr(_files.CheckedFile, "write", write)
    a = np.random.default_rng(1).integers(0, 256, (300, 100, 3), dtype=np.uint8)
    before = _with_old_output(tmp_path, a)
    r = ndconv_inproc("filter", "in.tif", "out.tif", "--kernel", "box:3", "--tile-rows", "4",
                      "--force", cwd=tmp_path)
    assert_refused(r, "No space left on device")
    assert snapshot(tmp_path) == before


def test_each_band_starts_the_writeback_and_the_file_is_still_synced(tmp_path, monkeypatch):
    started, synced = [], []
    real_sync = _files.CheckedFile.sync
    monkeypatch.setattr(_files.CheckedFile, "start_writeback",
                        lambda self: started.append(self.written))
    monkeypatch.setattr(_files.CheckedFile, "sync",
                        lambda self: (synced.append(self.written), real_sync(self))[1])
    a = np.random.default_rng(2).integers(0, 256, (50, 20), dtype=np.uint8)
    _save(tmp_path / "in.tif", a)
    r = ndconv_inproc("filter", "in.tif", "out.tif", "--kernel", "edge", "--tile-rows", "10",
                      cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(started) == 5 and started == sorted(started)  # one per band, as written
    assert synced == [os.path.getsize(tmp_path / "out.tif")]  # then one fsync of all of it


def test_bands_out_of_order_are_refused():
    out = np.zeros((10, 4), np.uint8)
    bands = images.TiffBands(io.BytesIO())
    bands.band(out, 0, 5)
    with pytest.raises(ValueError, match="out of order"):
        bands.band(out, 6, 10)
    bands.abort()


def test_missing_rows_fail_the_write():
    out = np.zeros((10, 4), np.uint8)
    bands = images.TiffBands(io.BytesIO())
    bands.band(out, 0, 5)
    with pytest.raises(ValueError, match="never handed over"):
        bands.close()


def test_start_writeback_on_a_real_file(tmp_path):
    # a hint only: it must neither fail nor change what sync checks
    with _files.atomic_write(tmp_path / "x.bin") as f:
        f.write(b"abc" * 1000)
        f.start_writeback()
        f.write(b"d")
    assert (tmp_path / "x.bin").read_bytes() == b"abc" * 1000 + b"d"


def test_a_run_killed_between_bands_keeps_the_old_output(tmp_path):
    import subprocess
    import sys
    import textwrap

    a = np.random.default_rng(3).integers(0, 256, (90, 40, 3), dtype=np.uint8)
    before = _with_old_output(tmp_path, a)
    code = textwrap.dedent("""
        import os, signal, sys
        from ndconv import images
        from ndconv.cli import main
        real, seen = images.TiffBands.band, []
        def band(self, out, r0, r1):
            real(self, out, r0, r1)
            seen.append(r0)
            if len(seen) == 3:  # some bands written, more to come
                import time; time.sleep(0.2)
                os.kill(os.getpid(), signal.SIGKILL)
        images.TiffBands.band = band
        main(["filter", "in.tif", "out.tif", "--kernel", "sharpen", "--tile-rows", "9",
              "--force"])
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, timeout=120,
                       capture_output=True, text=True)
    assert r.returncode == -9, r.stderr
    left = set(snapshot(tmp_path)) - set(before)
    assert len(left) == 1 and _files._TEMP.match(next(iter(left))), left  # only a temp file
    assert (tmp_path / "out.tif").read_bytes() == b"the old output"
    r = ndconv_inproc("filter", "in.tif", "other.tif", "--kernel", "edge", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not any(_files._TEMP.match(n) for n in os.listdir(tmp_path))  # removed by the next run


@pytest.mark.parametrize("kernel, kw", [
    ("sharpen", {}),                                  # fused direct
    ("box:31", {"padding_mode": "circular"}),         # fused separable
    ("gaussian:8", {}),                               # bands through conv
    ("edge", {"value_range": "rescale"}),             # two passes: bands of the second
    ("sharpen", {"alpha": True}),                     # alpha joined at the end: one call
])
def test_on_band_hands_over_final_rows_in_order(kernel, kw, monkeypatch):
    from ndconv.images import _fused

    monkeypatch.setattr(_fused, "BAND_BYTES", 2000)  # many fused bands
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (97, 61, 4 if kw.get("alpha") else 3), dtype=np.uint8)
    seen = []

    def on_band(out, r0, r1):
        seen.append((r0, r1, out[r0:r1].copy(), out))

    got = images.filter_image(a, kernels.get(kernel), rows_per_tile=13,
                              on_band=on_band, **kw)
    assert seen[0][0] == 0 and seen[-1][1] == got.shape[0]
    assert all(p[1] == q[0] for p, q in zip(seen, seen[1:]))  # contiguous, in order
    assert all(s[3] is seen[0][3] for s in seen)
    for r0, r1, rows, _ in seen:  # final when handed over
        np.testing.assert_array_equal(rows, got[r0:r1])
    if kw.get("alpha"):
        assert len(seen) == 1
    else:
        assert len(seen) > 1
