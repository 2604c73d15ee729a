"""``ndconv.load`` under attack (issue 14, items 7-8): sizes checked before
decompressing, every damaged file a ValueError naming it, and a fuzz test of
mutated checkpoints.

Sizes: memory is measured with tracemalloc (NumPy reports its allocations
there), so "refused before decompressing" is a measured fact, not a hope.
"""

import io
import json
import os
import struct
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import ndconv
from ndconv.core import _memory

ALLOWED = (ValueError, KeyError, TypeError, _memory.MemoryLimitError)


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def _npz(path, entries, compression=zipfile.ZIP_STORED):
    """Write raw entries {name: bytes} as a zip (an .npz by hand)."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


def _npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _manifest(value):
    return _npy_bytes(np.array(json.dumps(value)))


def test_zip_bomb_is_refused_by_the_memory_guard_before_inflating(tmp_path):
    """Before: a 2 MB file took 2 GB. Here 200 MB of zeros deflate to 200 kB."""
    path = tmp_path / "bomb.npz"
    ndconv.save({"w": np.zeros(25_000_000)}, path, compress=True)
    assert os.path.getsize(path) < 1_000_000
    with _memory.memory_limit("50MB"):
        def load():
            with pytest.raises(_memory.MemoryLimitError, match="bomb.npz"):
                ndconv.load(path)
        assert _peak(load) < 5_000_000


def test_like_mismatch_is_refused_before_inflating(tmp_path):
    path = tmp_path / "big.npz"
    w = np.zeros(5_000_000)
    ndconv.save({"model": {"w": w, "x": np.ones(2)}}, path, compress=True)

    def wrong_keys():
        with pytest.raises(KeyError, match="unexpected keys"):
            ndconv.load(path, like={"model": {"w": w}})

    def wrong_shape():
        with pytest.raises(ValueError, match="shape"):
            ndconv.load(path, like={"model": {"w": np.zeros(3), "x": np.ones(2)}})

    assert _peak(wrong_keys) < 5_000_000  # the array is 40 MB
    assert _peak(wrong_shape) < 5_000_000
    got = ndconv.load(path, like={"model": {"w": np.zeros(5_000_000), "x": np.ones(2)}})
    assert got["model"]["w"].shape == (5_000_000,) and got["model"]["x"].sum() == 2


@pytest.mark.parametrize("gigabytes", [16, 80])
def test_npy_header_claiming_gigabytes_is_refused_without_allocating(tmp_path, gigabytes):
    # A .npy header (format 1.0, padded to 64 bytes) claiming the gigabytes,
    # followed by 8 bytes of data.
    d = repr({"descr": "<f8", "fortran_order": False,
              "shape": (gigabytes * 125_000_000,)}).encode()
    hlen = -(-(10 + len(d) + 1) // 64) * 64 - 10
    fake = b"\x93NUMPY\x01\x00" + struct.pack("<H", hlen) + d.ljust(hlen - 1) + b"\n" + b"\0" * 8
    path = tmp_path / "claims.npz"
    _npz(path, {"w.npy": fake})

    def load():
        with pytest.raises(ValueError, match="claims.npz.*declares shape"):
            ndconv.load(path)
    assert _peak(load) < 5_000_000


@pytest.mark.parametrize("manifest", [[], None, 3, "text", {"format": "ndconv-checkpoint"},
                                      {"format": "ndconv-checkpoint", "tree": []},
                                      {"format": "ndconv-checkpoint", "tree": {"t": "dict"}},
                                      {"format": "ndconv-checkpoint",
                                       "tree": {"t": "int", "v": "x"}}])
def test_manifest_of_the_wrong_type_is_a_value_error(tmp_path, manifest):
    path = tmp_path / "m.npz"
    _npz(path, {"__ndconv__.npy": _manifest(manifest)})
    with pytest.raises(ValueError, match="m.npz.*damaged ndconv manifest"):
        ndconv.load(path)


@pytest.mark.parametrize("depth", [150, 600])
def test_manifest_nested_deep_is_a_value_error(tmp_path, depth):
    tree = '{"t": "list", "items": [' * depth + '{"t": "none"}' + "]}" * depth
    text = '{"format": "ndconv-checkpoint", "version": 1, "tree": ' + tree + "}"
    path = tmp_path / "deep.npz"
    _npz(path, {"__ndconv__.npy": _npy_bytes(np.array(text))})
    # 600: json itself stops (RecursionError); 150: ndconv's own depth limit.
    with pytest.raises(ValueError, match="deep.npz.*damaged ndconv manifest: (max|nested)"):
        ndconv.load(path)


def test_damaged_deflate_stream_is_a_value_error(tmp_path):
    path = tmp_path / "ck.npz"
    ndconv.save({"w": np.arange(100000.0)}, path, compress=True)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("w.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start + 200, start + 260):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="ck.npz.*damaged"):
        ndconv.load(path)


def test_single_npy_and_junk_name_the_file(tmp_path):
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(ValueError, match="single .npy"):
        ndconv.load(tmp_path / "one.npy")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="junk.npz"):
        ndconv.load(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        ndconv.load(tmp_path / "missing.npz")


def _mutations(data, rng, n):
    for _ in range(n):
        b = bytearray(data)
        kind = rng.integers(4)
        if kind == 0:  # flip a few bytes
            for i in rng.integers(0, len(b), rng.integers(1, 8)):
                b[i] = rng.integers(256)
        elif kind == 1:  # truncate
            b = b[: rng.integers(0, len(b))]
        elif kind == 2:  # insert junk
            i = rng.integers(0, len(b))
            b[i:i] = rng.integers(0, 256, rng.integers(1, 64)).astype(np.uint8).tobytes()
        else:  # overwrite a 4-byte field with a large number (sizes, offsets)
            i = rng.integers(0, max(1, len(b) - 4))
            b[i:i + 4] = struct.pack("<I", int(rng.integers(2**31, 2**32)))
        yield bytes(b)


@pytest.mark.parametrize("compress", [False, True])
def test_fuzz_load_mutated_checkpoints(tmp_path, compress):
    """A few hundred mutated checkpoints: each loads, or raises one of the
    documented errors (never zlib.error, AttributeError, RecursionError...)."""
    import ndconv.nn as nn

    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3, rng=0))
    path = tmp_path / "good.npz"
    ndconv.save({"model": model.state_dict(), "epoch": 3, "lr": 0.1, "name": "x"}, path,
                compress=compress)
    data = path.read_bytes()
    rng = np.random.default_rng(14 + compress)
    bad = tmp_path / "bad.npz"
    t0 = time.perf_counter()
    outcomes = {}
    with _memory.memory_limit("64MB"):
        for mutated in _mutations(data, rng, 300):
            bad.write_bytes(mutated)
            try:
                ndconv.load(bad)
                outcomes["ok"] = outcomes.get("ok", 0) + 1
            except ALLOWED as exc:
                assert "bad.npz" in str(exc) or isinstance(exc, (KeyError, TypeError)), exc
                outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
    assert time.perf_counter() - t0 < 60
    assert outcomes.get("ValueError", 0) > 100, outcomes


@pytest.mark.parametrize("compressed", [False, True])
def test_own_reader_matches_numpy_load(tmp_path, compressed):
    """load reads the .npy entries itself now: NumPy's np.load is the reference."""
    arrays = {
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "scalar": np.array(3.0, np.float32), "empty": np.zeros((0, 5)),
        "str": np.array(["ab", "c"]), "bool": np.array([True, False]),
        "complex": np.array([1 + 2j]), "big_endian": np.arange(5, dtype=">i4"),
        "int8": np.arange(-3, 3, dtype=np.int8),
    }
    path = tmp_path / "p.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    got = ndconv.load(path)
    with np.load(path) as ref:
        assert sorted(got) == sorted(ref.files)
        for k in ref.files:
            assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape, k
            np.testing.assert_array_equal(got[k], ref[k])
            assert got[k].flags.writeable
    assert got["fortran"].flags.f_contiguous
