"""Files under attack (issue 14, items 1-6): a full disk, races for one output,
killed runs' temporary files, inputs that are not regular files, stderr noise,
and images that must come back as they went in.

A full disk is RLIMIT_FSIZE in a subprocess (Python ignores SIGXFSZ, so a
write past the limit fails with EFBIG, as on a full file system). Races are a
file created while the run writes (a hook), and real concurrent processes.
FIFOs are always opened from a subprocess with a timeout, so a regression
cannot hang the suite. References: Pillow, tifffile, OpenCV and SciPy.
"""

import os
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image, ImageOps
from scipy import ndimage

import ndconv
from ndconv.io import _files
from ndconv import images, kernels

tifffile = pytest.importorskip("tifffile")


def run(args, cwd, fsize=None, timeout=120, code=None):
    """``python -m ndconv ARGS`` (or ``python -c CODE``), optionally with a file-size limit."""

    def limit():
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "ndconv", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          preexec_fn=limit)


def one_line_error(r):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def leftovers(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".part"))


@pytest.fixture
def rgb(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "rgb.png")
    return img


# --------------------------------------------------------------------------
# 1. a short or failed write is never published


@pytest.mark.parametrize("out", ["out.jpg", "out.tif", "out.png"])
def test_disk_full_is_an_error_and_publishes_nothing(tmp_path, rgb, out):
    """Before: JPEG and TIFF (Pillow writing to the descriptor itself) printed
    'wrote out.jpg', exit 0, and the file did not decode."""
    r = run(["filter", "rgb.png", out, "--kernel", "edge"], tmp_path, fsize=1000)
    line = one_line_error(r)
    assert "File too large" in line or "No space" in line, line
    assert not (tmp_path / out).exists()
    assert leftovers(tmp_path) == []


def test_disk_full_with_force_keeps_the_old_file(tmp_path, rgb):
    assert run(["filter", "rgb.png", "out.jpg", "--kernel", "edge"], tmp_path).returncode == 0
    before = (tmp_path / "out.jpg").read_bytes()
    r = run(["filter", "rgb.png", "out.jpg", "--kernel", "box:3", "--force"], tmp_path,
            fsize=1000)
    one_line_error(r)
    assert (tmp_path / "out.jpg").read_bytes() == before
    assert leftovers(tmp_path) == []


def test_disk_full_checkpoint_keeps_the_old_one(tmp_path):
    ndconv.save({"w": np.zeros(10)}, tmp_path / "ck.npz")
    before = (tmp_path / "ck.npz").read_bytes()
    code = textwrap.dedent("""
        import numpy as np, ndconv
        try:
            ndconv.save({"w": np.ones(100000)}, "ck.npz")
        except OSError as exc:
            print("OSError", exc.errno)
    """)
    r = run(None, tmp_path, fsize=len(before) + 4096, code=code)
    assert r.stdout.startswith("OSError"), (r.stdout, r.stderr)
    assert (tmp_path / "ck.npz").read_bytes() == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("out", ["out.tif", "out.zarr"])
def test_disk_full_tiled(tmp_path, out):
    pytest.importorskip("dask")
    img = np.random.default_rng(1).integers(0, 256, (300, 300), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", img)
    r = run(["filter", "in.tif", out, "--kernel", "box:3", "--tiled"], tmp_path, fsize=20000)
    assert r.returncode != 0 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / out).exists()
    assert leftovers(tmp_path) == []


def test_checked_file_hides_the_descriptor_and_counts(tmp_path):
    with _files.atomic_write(tmp_path / "x.bin") as f:
        with pytest.raises(OSError):
            f.fileno()
        f.write(b"abc")
        f.seek(0)
        f.write(b"A")
        assert f.written == 3
    assert (tmp_path / "x.bin").read_bytes() == b"Abc"


def test_verify_failure_publishes_nothing(tmp_path):
    (tmp_path / "x").write_bytes(b"old")

    def verify(tmp):
        raise OSError("does not read back")

    with pytest.raises(OSError, match="read back"):
        with _files.atomic_write(tmp_path / "x", verify=verify) as f:
            f.write(b"new")
    assert (tmp_path / "x").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x"]


def test_tour_report_goes_through_the_shared_publisher(tmp_path):
    tmp = _files.temp_dir(tmp_path / "report")
    assert _files._TEMP.match(os.path.basename(tmp))
    (open(os.path.join(tmp, "index.html"), "w")).write("<html></html>")
    os.mkdir(tmp_path / "report")  # appeared meanwhile, though empty
    with pytest.raises(_files.OutputExistsError):
        _files.publish_dir(tmp, tmp_path / "report")
    assert os.listdir(tmp_path / "report") == []


# --------------------------------------------------------------------------
# 2. no-overwrite cannot be raced


def test_output_created_mid_run_is_not_replaced(tmp_path, rgb, monkeypatch):
    """Before: checked at the start, replaced at the end: the file made in
    between was destroyed without --force."""
    from ndconv.cli import main

    real = images.write_image

    def write_and_race(array, f, fmt):
        (tmp_path / "out.png").write_bytes(b"someone else's")
        return real(array, f, fmt)

    monkeypatch.setattr(images, "write_image", write_and_race)
    monkeypatch.chdir(tmp_path)
    assert main(["filter", "rgb.png", "out.png", "--kernel", "edge"]) == 2
    assert (tmp_path / "out.png").read_bytes() == b"someone else's"
    assert leftovers(tmp_path) == []


def test_concurrent_runs_to_one_output_exactly_one_wins(tmp_path, rgb):
    cmd = [sys.executable, "-m", "ndconv", "filter", "rgb.png", "out.png", "--kernel", "box:3"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2, 2, 2], results
    for rc, err in results:
        if rc == 2:
            assert len(err.splitlines()) == 1 and "already exists" in err, err
    assert leftovers(tmp_path) == []
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")),
                                  images.filter_image(rgb, kernels.get("box:3")))


def test_save_without_overwrite_is_not_raced(tmp_path, monkeypatch):
    real = np.lib.format.write_array

    def write_and_race(fh, arr, **kw):
        if not (tmp_path / "ck.npz").exists():
            (tmp_path / "ck.npz").write_bytes(b"theirs")
        return real(fh, arr, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", write_and_race)
    with pytest.raises(FileExistsError):
        ndconv.save({"w": np.ones(3)}, tmp_path / "ck.npz", overwrite=False)
    assert (tmp_path / "ck.npz").read_bytes() == b"theirs"
    assert leftovers(tmp_path) == []


def test_zarr_folder_created_mid_run_is_not_replaced(tmp_path, monkeypatch):
    pytest.importorskip("dask")
    from ndconv import dask as ndask
    from ndconv import tiled

    tifffile.imwrite(tmp_path / "in.tif", np.zeros((40, 40), np.uint8))
    real = ndask.store_by_slabs

    def store_and_race(*a, **kw):
        (tmp_path / "out.zarr").mkdir()
        (tmp_path / "out.zarr" / "theirs").write_text("x")
        return real(*a, **kw)

    monkeypatch.setattr(ndask, "store_by_slabs", store_and_race)
    with pytest.raises(FileExistsError):
        tiled.filter_tiled(tmp_path / "in.tif", tmp_path / "out.zarr", np.ones((3, 3)))
    assert os.listdir(tmp_path / "out.zarr") == ["theirs"]
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------
# 3. stale temporary files of killed runs are recognised and removed


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporary_files_are_removed(tmp_path, rgb):
    dead = f".out.png.ndconv-{_files._HOST}-{_dead_pid()}-0badc0de.part"
    alive = f".out.png.ndconv-{_files._HOST}-{os.getpid()}-0badc0de.part"
    other_host = ".out.png.ndconv-00000000-1-0badc0de.part"
    for name in (dead, alive, other_host):
        (tmp_path / name).write_bytes(b"x" * 100)
    (tmp_path / f".k.zarr.ndconv-{_files._HOST}-{_dead_pid()}-00.part").mkdir()
    r = run(["filter", "rgb.png", "out.png", "--kernel", "edge"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert leftovers(tmp_path) == sorted([alive, other_host])


def test_a_killed_save_leaves_a_recognisable_name_that_the_next_run_removes(tmp_path):
    code = textwrap.dedent("""
        import os, signal, numpy as np, ndconv
        real = np.lib.format.write_array
        def die(fh, arr, **kw):
            real(fh, arr, **kw)
            os.kill(os.getpid(), signal.SIGKILL)
        np.lib.format.write_array = die
        ndconv.save({"w": np.ones(1000)}, "ck.npz")
    """)
    r = run(None, tmp_path, code=code)
    assert r.returncode == -9
    left = leftovers(tmp_path)
    assert len(left) == 1 and _files._TEMP.match(left[0]), left
    ndconv.save({"w": np.ones(3)}, tmp_path / "other.npz")
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------
# 4. usage errors, not internal errors; only regular files are read


def test_huge_padding_is_refused_before_allocating(tmp_path, rgb):
    line = one_line_error(run(["filter", "rgb.png", "o.png", "--kernel", "edge",
                               "--padding", "1000000"], tmp_path))
    assert "output image" in line and "memory limit" in line, line


def test_malformed_npy_header_is_a_usage_error(tmp_path, rgb):
    good = (tmp_path / "k.npy")
    np.save(good, np.ones((3, 3)))
    data = bytearray(good.read_bytes())
    i = data.index(b"{")
    data[i:i + 8] = b"{'descr'"[:0] + b"{(((((("  # unbalanced: tokenize.TokenError
    (tmp_path / "bad.npy").write_bytes(bytes(data))
    line = one_line_error(run(["filter", "rgb.png", "o.png", "--kernel", "bad.npy"], tmp_path))
    assert "malformed .npy header" in line, line


def test_tiff_header_claiming_100000_squared_is_one_line(tmp_path):
    pytest.importorskip("dask")
    import struct

    tifffile.imwrite(tmp_path / "small.tif", np.zeros((16, 16), np.uint8))
    data = bytearray((tmp_path / "small.tif").read_bytes())
    with tifffile.TiffFile(tmp_path / "small.tif") as tf:
        for tag in tf.pages[0].tags.values():
            if tag.code in (256, 257):  # ImageWidth, ImageLength (LONG)
                data[tag.valueoffset:tag.valueoffset + 4] = struct.pack("<I", 100000)
    (tmp_path / "huge.tif").write_bytes(bytes(data))
    line = one_line_error(run(["filter", "huge.tif", "o.tif", "--kernel", "edge", "--tiled"],
                              tmp_path))
    assert "damaged TIFF" in line, line


@pytest.mark.parametrize("role", ["kernel", "input", "checkpoint"])
def test_a_fifo_is_refused_without_blocking(tmp_path, rgb, role):
    os.mkfifo(tmp_path / "fifo")
    if role == "checkpoint":
        code = ("import ndconv\ntry:\n    ndconv.load('fifo')\n"
                "except ValueError as e:\n    print(e)")
        r = run(None, tmp_path, code=code, timeout=60)
        assert "FIFO" in r.stdout and "not a regular file" in r.stdout, (r.stdout, r.stderr)
        return
    args = (["filter", "rgb.png", "o.png", "--kernel", "fifo"] if role == "kernel"
            else ["filter", "fifo", "o.png", "--kernel", "edge"])
    # The kernel needs a .npy name to be read as a file.
    if role == "kernel":
        os.rename(tmp_path / "fifo", tmp_path / "fifo.npy")
        args[-1] = "fifo.npy"
    line = one_line_error(run(args, tmp_path, timeout=60))
    assert "FIFO" in line and "not a regular file" in line, line


def test_devices_and_folders_are_refused(tmp_path, rgb):
    # /dev/zero in a subprocess with a time and memory limit: read, it never ends.
    code = textwrap.dedent("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        import ndconv
        from ndconv import images
        for f in (ndconv.load, images.read_image):
            try:
                f("/dev/zero")
            except ValueError as e:
                print(e)
    """)
    r = run(None, tmp_path, code=code, timeout=60)
    assert r.stdout.count("is a character device, not a regular file") == 2, (r.stdout, r.stderr)
    with pytest.raises(ValueError, match="folder"):
        ndconv.load(tmp_path)
    (tmp_path / "d.npy").mkdir()
    line = one_line_error(run(["filter", "rgb.png", "o.png", "--kernel", "d.npy"], tmp_path))
    assert "folder" in line


# --------------------------------------------------------------------------
# 5. nothing on stderr of a successful run; overflow is refused, never cast


def test_pillow_bomb_warning_is_not_printed(tmp_path, monkeypatch):
    """Pillow warns above MAX_IMAGE_PIXELS (89.5 MP: a 144 MP photo); the
    memory guard is ndconv's rule. The limit is lowered here to keep it small."""
    import warnings

    img = np.zeros((40, 40), np.uint8)
    Image.fromarray(img).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 px: warned, not refused
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(images.read_image(tmp_path / "big.png"), img)
    from ndconv.core import _memory

    with _memory.memory_limit(1000):
        with pytest.raises(_memory.MemoryLimitError, match="input image"):
            images.read_image(tmp_path / "big.png")


def test_overflowing_kernel_is_one_clear_line(tmp_path, rgb):
    import warnings

    np.save(tmp_path / "huge.npy", np.array([[1e308, -1e308]]))
    line = one_line_error(run(["filter", "rgb.png", "o.png", "--kernel", "huge.npy"], tmp_path))
    assert "overflows" in line, line
    assert not (tmp_path / "o.png").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="overflows"):
            images.filter_image(rgb, np.array([[1e308, -1e308]]))
        # A kernel beyond float32 whose results fit float64 is computed in
        # float64 (no inf - inf), then clipped as usual.
        out = images.filter_image(rgb, np.array([[1e39]]))
        np.testing.assert_array_equal(out, np.where(rgb > 0, 255, 0))


# --------------------------------------------------------------------------
# 6. no silent changes to images


def test_multipage_tiff_is_refused(tmp_path):
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tw:
        for _ in range(3):
            tw.write(np.zeros((8, 8), np.uint8))
    line = one_line_error(run(["filter", "pages.tif", "o.tif", "--kernel", "edge"], tmp_path))
    assert "3 pages" in line, line


def test_16bit_rgb_stays_16bit(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(2)
    img = rng.integers(0, 65536, (30, 40, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "in.png"), img[..., ::-1])  # OpenCV: BGR
    tifffile.imwrite(tmp_path / "in.tif", img, photometric="rgb")
    ref = images.filter_image(img, kernels.get("box:3"))
    assert ref.dtype == np.uint16
    for src, dst in [("in.png", "o.png"), ("in.tif", "o.tif"), ("in.png", "o.tif")]:
        r = run(["filter", src, dst, "--kernel", "box:3"], tmp_path)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        if dst.endswith(".png"):
            back = cv2.imread(str(tmp_path / dst), cv2.IMREAD_UNCHANGED)[..., ::-1]
        else:
            back = tifffile.imread(tmp_path / dst)
        assert back.dtype == np.uint16
        # The reference: SciPy on the same uint16 pixels (rounded, clipped).
        sc = ndimage.correlate(img.astype(np.float64), kernels.get("box:3")[:, :, None],
                               mode="constant")
        np.testing.assert_allclose(back.astype(np.float64), np.clip(np.rint(sc), 0, 65535),
                                   atol=1)
        os.remove(tmp_path / dst)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does(tmp_path, orientation):
    img = np.random.default_rng(orientation).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    im = Image.fromarray(img)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as ref:
        ref = np.asarray(ImageOps.exif_transpose(ref))
    np.testing.assert_array_equal(images.read_image(tmp_path / "o.png"), ref)


def test_int32_tiff_comes_back_int32(tmp_path):
    img = (np.arange(30 * 40, dtype=np.int64).reshape(30, 40) * 100003 - 60_000_000).astype(np.int32)
    tifffile.imwrite(tmp_path / "in.tif", img)
    r = run(["filter", "in.tif", "o.tif", "--kernel", "box:3"], tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    back = tifffile.imread(tmp_path / "o.tif")
    assert back.dtype == np.int32
    sc = ndimage.correlate(img.astype(np.float64), np.full((3, 3), 1 / 9), mode="constant")
    np.testing.assert_array_equal(back, np.rint(sc).astype(np.int32))


def test_float64_tiff_comes_back_float64(tmp_path):
    """Values beyond float32's range (and float64's precision) survive the CLI:
    it wrote float32 before (inf, with only a RuntimeWarning)."""
    rng = np.random.default_rng(5)
    img = rng.standard_normal((30, 41)) * 1e300
    img[0, 0] = 1 / 3
    tifffile.imwrite(tmp_path / "in.tif", img)
    r = run(["filter", "in.tif", "o.tif", "--kernel", "box:3"], tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    back = tifffile.imread(tmp_path / "o.tif")
    assert back.dtype == np.float64
    sc = ndimage.correlate(img, np.full((3, 3), 1 / 9), mode="constant")
    np.testing.assert_allclose(back, sc, rtol=1e-12, atol=0)


def test_without_tifffile_float64_is_float32_or_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images.files, "_tifffile", lambda: None)
    ok = np.linspace(-3e38, 3e38, 12 * 10).reshape(12, 10)
    with open(tmp_path / "ok.tif", "wb") as f:
        images.write_image(ok, f, "TIFF")
    with Image.open(tmp_path / "ok.tif") as im:
        assert im.mode == "F"
        np.testing.assert_array_equal(np.asarray(im), ok.astype(np.float32))
    big = ok * 2  # |v| up to 6e38 > float32's 3.4e38
    with open(tmp_path / "big.tif", "wb") as f:
        with pytest.raises(ValueError, match=r"up to 6e\+38, beyond float32's range.*tifffile"):
            images.write_image(big, f, "TIFF")


def test_rgba_alpha_is_kept(tmp_path):
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    Image.fromarray(img, "RGBA").save(tmp_path / "in.png")
    r = run(["filter", "in.png", "o.png", "--kernel", "edge"], tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "alpha kept" in r.stdout
    back = np.asarray(Image.open(tmp_path / "o.png"))
    np.testing.assert_array_equal(back[..., 3], img[..., 3])
    k = kernels.get("edge")
    for c in range(3):
        sc = ndimage.correlate(img[..., c].astype(np.float64), k, mode="constant")
        np.testing.assert_array_equal(back[..., c], np.clip(np.rint(sc), 0, 255))
    # Stride 2, valid: alpha sampled at each window's centre.
    out = images.filter_image(img, k, padding="valid", stride=2, alpha=True)
    np.testing.assert_array_equal(out[..., 3], img[1:-1:2, 1:-1:2, 3])


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 kB tmpfs: a really full file system (ENOSPC). Needs the right to mount."""
    where = tmp_path / "tiny"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


@pytest.mark.parametrize("out", ["out.jpg", "out.tif", "out.png"])
def test_really_full_file_system(tmp_path, tiny_tmpfs, out):
    img = np.random.default_rng(4).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "rgb.png")
    (tiny_tmpfs / out).write_bytes(b"old")
    r = run(["filter", str(tmp_path / "rgb.png"), str(tiny_tmpfs / out), "--kernel", "edge",
             "--force"], tmp_path)
    line = one_line_error(r)
    assert "No space left on device" in line and out in line, line
    assert os.listdir(tiny_tmpfs) == [out] and (tiny_tmpfs / out).read_bytes() == b"old"


@pytest.mark.parametrize("value_range", ["clip", "rescale"])
def test_tiled_rgba_alpha_is_kept_as_in_memory(tmp_path, value_range):
    pytest.importorskip("dask")
    from ndconv import tiled

    img = np.random.default_rng(5).integers(0, 256, (50, 40, 4), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", img, photometric="rgb", extrasamples=("unassalpha",))
    k = kernels.get("edge")
    tiled.filter_tiled(tmp_path / "in.tif", tmp_path / "o.tif", k, value_range=value_range,
                       alpha=True, block=16)
    back = tifffile.imread(tmp_path / "o.tif")
    np.testing.assert_array_equal(back[..., 3], img[..., 3])
    ref = images.filter_image(img, k, value_range=value_range, alpha=True)
    np.testing.assert_allclose(back.astype(float), ref.astype(float), atol=1)


def test_cmyk_tiff_is_converted_as_pillow_does(tmp_path):
    img = np.random.default_rng(6).integers(0, 256, (8, 9, 4), dtype=np.uint8)
    Image.fromarray(img, "CMYK").save(tmp_path / "cmyk.tif")
    with Image.open(tmp_path / "cmyk.tif") as im:
        ref = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(images.read_image(tmp_path / "cmyk.tif"), ref)


def test_without_tifffile_or_opencv_16bit_colour_is_refused_not_cut(tmp_path, monkeypatch):
    img = np.full((6, 7, 3), 40000, np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", img, photometric="rgb")
    monkeypatch.setattr(images.files, "_tifffile", lambda: None)
    with pytest.raises(ValueError, match="more than 8 bits per colour sample"):
        images.read_image(tmp_path / "rgb16.tif")
    buf = tmp_path / "rgb16.png"
    with open(buf, "wb") as f:
        images.files._write_png16(img, f)
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
    with pytest.raises(ValueError, match="16-bit colour PNG"):
        images.read_image(buf)


def test_report_into_an_existing_folder_swaps_figures_whole(tmp_path):
    """The tour's --force: figures/ replaced as a whole, index.html last,
    everything else in the folder left alone, no temporary name left."""
    report = tmp_path / "report"
    (report / "figures").mkdir(parents=True)
    (report / "figures" / "old.png").write_bytes(b"old")
    (report / "index.html").write_text("old page")
    (report / "notes.txt").write_text("mine")
    tmp = _files.temp_dir(report)
    os.mkdir(os.path.join(tmp, "figures"))
    open(os.path.join(tmp, "figures", "new.png"), "wb").write(b"new")
    open(os.path.join(tmp, "index.html"), "w").write("new page")
    _files.publish_dir(tmp, report, merge=True)
    assert sorted(os.listdir(report)) == ["figures", "index.html", "notes.txt"]
    assert os.listdir(report / "figures") == ["new.png"]
    assert (report / "index.html").read_text() == "new page"
    assert leftovers(tmp_path) == []
