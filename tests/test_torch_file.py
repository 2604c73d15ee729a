"""load_torch against torch.load; safetensors against the safetensors package; malicious and broken files."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
from conftest import assert_close

import ndconv
from ndconv import nn
from ndconv.io import load_safetensors, load_torch, save_safetensors

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")

FORMATS = {"zip": True, "legacy": False}

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
          torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64,
          torch.complex128, torch.uint16, torch.uint32, torch.uint64, torch.float8_e4m3fn,
          torch.float8_e5m2]


def _save(obj, path, fmt):
    torch.save(obj, path, _use_new_zipfile_serialization=FORMATS[fmt])
    return path


def _bits(t):
    """The tensor's bytes in its element order (for a bit-exact comparison)."""
    c = t.contiguous()
    return c.reshape(-1).view(torch.uint8).numpy() if c.numel() else np.zeros(0, np.uint8)


def assert_same_tensor(a, t, what=""):
    assert isinstance(a, np.ndarray), what
    assert a.shape == tuple(t.shape), what
    assert a.dtype.itemsize == t.element_size(), what
    np.testing.assert_array_equal(np.ascontiguousarray(a).reshape(-1).view(np.uint8), _bits(t),
                                  err_msg=what)
    if t.numel() > 1:
        assert a.strides == tuple(s * t.element_size() for s in t.stride()), what


def _random(dtype, shape, seed):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g, dtype=torch.float64) * 10).to(dtype)
    if dtype.is_complex:
        return torch.randn(shape, generator=g, dtype=dtype)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    hi = 100 if dtype in (torch.uint16, torch.uint32, torch.uint64) else 120
    return torch.randint(0, hi, shape, generator=g, dtype=torch.int64).to(dtype)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_dtype_bit_identical_to_torch_load(tmp_path, fmt):
    obj = {str(dt): _random(dt, (3, 4), i) for i, dt in enumerate(DTYPES)
           if fmt == "zip" or dt not in (torch.uint16, torch.uint32, torch.uint64,
                                         torch.float8_e4m3fn, torch.float8_e5m2)}
    path = _save(obj, tmp_path / "d.pt", fmt)
    ref, got = torch.load(path), load_torch(path)
    assert list(got) == list(ref)
    for k in ref:
        assert_same_tensor(got[k], ref[k], k)
    assert got["torch.bfloat16"].dtype == ml_dtypes.bfloat16
    assert got["torch.float16"].dtype == np.float16 and got["torch.bool"].dtype == np.bool_
    # NaN and infinities are bits like any other.
    special = torch.tensor([np.nan, np.inf, -np.inf, -0.0, 1e-45], dtype=torch.float32)
    path = _save({"s": special, "h": special.half(), "b": special.bfloat16()}, tmp_path / "s.pt", fmt)
    for k, t in torch.load(path).items():
        assert_same_tensor(load_torch(path)[k], t, k)


@pytest.mark.parametrize("fmt", FORMATS)
def test_nested_containers_and_plain_values(tmp_path, fmt):
    obj = {"model": OrderedDict(w=torch.ones(2, 3), b=torch.zeros(3)),
           "opt": {"state": {0: {"step": 3, "exp_avg": torch.arange(4.0)}}, "lr": 1e-3},
           "list": [torch.tensor(1.5), (torch.tensor([1, 2]), "x", None, True)],
           "epoch": 7, "name": "résnet", "bytes": b"\x00\xff", "set": {1, 2}, "c": 1 + 2j,
           "empty": torch.zeros(0, 3), "scalar": torch.tensor(3, dtype=torch.int64),
           "shape": torch.Size([2, 3]), "device": torch.device("cuda", 1)}
    path = _save(obj, tmp_path / "n.pt", fmt)
    ref, got = torch.load(path), load_torch(path)
    assert isinstance(got["model"], OrderedDict) and list(got["model"]) == ["w", "b"]
    assert_same_tensor(got["opt"]["state"][0]["exp_avg"], ref["opt"]["state"][0]["exp_avg"])
    assert got["opt"]["state"][0]["step"] == 3 and got["opt"]["lr"] == 1e-3
    assert_same_tensor(got["list"][0], ref["list"][0])
    assert_same_tensor(got["list"][1][0], ref["list"][1][0])
    assert got["list"][1][1:] == ("x", None, True)
    assert (got["epoch"], got["name"], got["bytes"], got["set"], got["c"]) == (
        7, "résnet", b"\x00\xff", {1, 2}, 1 + 2j)
    assert_same_tensor(got["empty"], ref["empty"])
    assert got["scalar"].shape == () and int(got["scalar"]) == 3
    assert got["shape"] == (2, 3) and got["device"] == "cuda:1"


@pytest.mark.parametrize("fmt", FORMATS)
def test_shared_storage_and_views(tmp_path, fmt):
    base = torch.arange(24, dtype=torch.float64)
    obj = {"base": base, "slice": base[5:11], "t": base.view(4, 6).t(), "step": base[1::3],
           "col": base.view(4, 6)[:, 2], "again": base, "exp": torch.ones(3).expand(4, 3)}
    path = _save(obj, tmp_path / "v.pt", fmt)
    ref, got = torch.load(path), load_torch(path)
    for k in ref:
        assert_same_tensor(got[k], ref[k], k)
    assert got["t"].strides == (8, 48) and got["exp"].strides == (0, 4)
    for k in ("slice", "t", "step", "col"):
        assert np.shares_memory(got[k], got["base"]), k
    got["base"][6] = -1.0  # as in torch, one storage: the views see the change
    assert got["slice"][1] == -1.0


def test_state_dict_of_a_torch_model_runs_in_ndconv(tmp_path):
    """Train a torch CNN a little, save its state dict, load it without torch: same outputs."""
    torch.manual_seed(0)
    tnet = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.PReLU(8),
        torch.nn.Conv2d(8, 8, 3, stride=2, groups=2), torch.nn.GroupNorm(2, 8), torch.nn.SiLU(),
        torch.nn.Upsample(scale_factor=2, mode="bilinear"), torch.nn.ReflectionPad2d(1),
        torch.nn.Conv2d(8, 4, 3), torch.nn.Hardswish(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.LayerNorm(4), torch.nn.Linear(4, 5), torch.nn.LogSoftmax(1))
    opt = torch.optim.SGD(tnet.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        tnet(torch.randn(4, 3, 12, 12)).sum().backward()
        opt.step()
    path = tmp_path / "net.pth"
    torch.save(tnet.state_dict(), path)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.PReLU(8),
        nn.Conv2d(8, 8, 3, stride=2, groups=2), nn.GroupNorm(2, 8), nn.SiLU(),
        nn.Upsample(scale_factor=2, mode="bilinear"), nn.ReflectionPad2d(1),
        nn.Conv2d(8, 4, 3), nn.Hardswish(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.LayerNorm(4), nn.Linear(4, 5), nn.LogSoftmax(1))
    state = load_torch(path)
    assert list(state) == list(net.state_dict())
    net.load_state_dict(state)
    tnet.eval()
    net.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    with torch.no_grad():
        ref = tnet.double()(torch.tensor(x, dtype=torch.float64)).numpy()
    assert_close(net(x), ref, np.float32)


def test_whole_pickled_model_is_refused_naming_the_class(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(ValueError, match=r"torch\.nn\.modules\.linear\.Linear.*state_dict"):
        load_torch(path)


class _Evil:
    """Unpickling this calls ``open(target, 'w')``: a file appears if it is executed."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


class _EvilSystem:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("evil, name", [(_Evil, r"\bopen\b"), (_EvilSystem, "system")])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, fmt, evil, name):
    target = tmp_path / "pwned"
    path = _save({"w": torch.ones(2), "x": evil(target)}, tmp_path / "evil.pt", fmt)
    assert not target.exists()
    with pytest.raises(ValueError, match=name):
        load_torch(path)
    assert not target.exists()


def _zip_checkpoint(path, data_pkl, records=()):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        for name, raw in records:
            z.writestr(f"archive/data/{name}", raw)
    return path


class _Storage:
    def __init__(self, key, numel, storage_type="FloatStorage"):
        self.pid = ("storage", getattr(torch, storage_type), key, "cpu", numel)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Storage) else None


class _Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _pickle(obj):
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _tensor(storage, offset, size, stride):
    return _Call(torch._utils._rebuild_tensor_v2, storage, offset, size, stride, False,
                 OrderedDict())


def test_forged_view_outside_its_storage_is_refused(tmp_path):
    st = _Storage("0", 4)
    good = _zip_checkpoint(tmp_path / "g.pt", _pickle({"a": _tensor(st, 1, (3,), (1,))}),
                           [("0", np.arange(4, dtype=np.float32).tobytes())])
    np.testing.assert_array_equal(load_torch(good)["a"], [1, 2, 3])
    np.testing.assert_array_equal(torch.load(good)["a"].numpy(), [1, 2, 3])
    for offset, size, stride in [(2, (3,), (1,)), (0, (2, 2), (3, 1)), (0, (5,), (1,)),
                                 (-1, (2,), (1,)), (0, (2,), (-1,))]:
        bad = _zip_checkpoint(tmp_path / "b.pt", _pickle({"a": _tensor(st, offset, size, stride)}),
                              [("0", np.arange(4, dtype=np.float32).tobytes())])
        with pytest.raises(ValueError, match="storage|non-negative"):
            load_torch(bad)


def test_storage_record_of_the_wrong_size_or_missing(tmp_path):
    st = _Storage("0", 1000)
    path = _zip_checkpoint(tmp_path / "w.pt", _pickle({"a": _tensor(st, 0, (4,), (1,))}),
                           [("0", np.zeros(4, np.float32).tobytes())])
    with pytest.raises(ValueError, match=r"declares 1000 elements.*16 bytes"):
        load_torch(path)
    path = _zip_checkpoint(tmp_path / "m.pt", _pickle({"a": _tensor(st, 0, (4,), (1,))}))
    with pytest.raises(ValueError, match="missing"):
        load_torch(path)


def test_pickle_cannot_alter_the_rebuild_functions(tmp_path):
    """BUILD on an allowed callable (setting its __defaults__) fails and changes nothing."""
    evil = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__"
            b"K\x01\x85s\x86b.")
    with pytest.raises(ValueError, match="damaged pickle"):
        load_torch(_zip_checkpoint(tmp_path / "b.pt", evil))
    path = _save({"a": torch.arange(3.0)}, tmp_path / "ok.pt", "zip")
    np.testing.assert_array_equal(load_torch(path)["a"], [0, 1, 2])


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_and_garbage_files(tmp_path, fmt):
    path = _save({"a": torch.arange(1000.0), "b": torch.ones(3)}, tmp_path / "t.pt", fmt)
    raw = path.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 7, 30, 1):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(raw[:cut])
        with pytest.raises(ValueError):
            load_torch(bad)
    for junk in (b"", b"hello world", b"PK\x03\x04garbage", b"\x80\x02K\x01."):
        bad = tmp_path / "junk.pt"
        bad.write_bytes(junk)
        with pytest.raises(ValueError, match="not a PyTorch checkpoint|damaged|not a torch"):
            load_torch(bad)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_named(tmp_path):
    path = tmp_path / "s.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(ValueError, match="TorchScript|refuses"):
        load_torch(path)


def test_load_torch_does_not_import_torch(tmp_path):
    import subprocess
    import sys
    path = _save({"w": torch.ones(2, 2)}, tmp_path / "w.pt", "zip")
    code = ("import sys, ndconv.io as io; d = io.load_torch(sys.argv[1]); "
            "assert 'torch' not in sys.modules; print(d['w'].sum())")
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "src"))
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip() == "4.0"


# -- safetensors -----------------------------------------------------------

SAFE_DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16, np.int64, np.int32,
               np.int16, np.int8, np.uint8, np.uint16, np.uint32, np.uint64, np.bool_,
               ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2]


def _arrays():
    r = np.random.default_rng(0)
    out = {f"t{i}.{np.dtype(dt).name}": (r.standard_normal((2, 3)) * 5).astype(dt)
           for i, dt in enumerate(SAFE_DTYPES)}
    out["scalar"] = np.array(2.5)
    out["empty"] = np.zeros((0, 4), np.float32)
    out["view"] = np.arange(12.0).reshape(3, 4).T  # not contiguous
    return out


def _assert_same_arrays(got, arrays):
    assert set(got) == set(arrays)
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k].reshape(-1).view(np.uint8),
                                      v.copy(order="C").reshape(-1).view(np.uint8), err_msg=k)


def test_safetensors_round_trip_with_the_package(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    arrays = _arrays()
    mine, ref = tmp_path / "mine.safetensors", tmp_path / "ref.safetensors"
    save_safetensors(arrays, mine, metadata={"format": "np"})
    safetensors_numpy.save_file({k: v.copy(order="C") for k, v in arrays.items()}, ref,
                                metadata={"format": "np"})
    assert mine.read_bytes() == ref.read_bytes()
    _assert_same_arrays(load_safetensors(ref), arrays)
    got, meta = load_safetensors(mine, metadata=True)
    _assert_same_arrays(got, arrays)
    assert meta == {"format": "np"}
    # The package's NumPy reader knows no bfloat16 / float8: read back the others.
    plain = {k: v for k, v in arrays.items() if "float8" not in k and "bfloat16" not in k}
    save_safetensors(plain, mine)
    _assert_same_arrays(safetensors_numpy.load_file(str(mine)), plain)


def test_safetensors_model_state_round_trip(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.BatchNorm2d(2))
    net(np.random.default_rng(0).standard_normal((2, 1, 5, 5)).astype(np.float32))
    save_safetensors(net.state_dict(), tmp_path / "n.safetensors")
    other = nn.Sequential(nn.Conv2d(1, 2, 3, rng=1), nn.BatchNorm2d(2))
    other.load_state_dict(load_safetensors(tmp_path / "n.safetensors"))
    for (k, a), b in zip(net.state_dict().items(), other.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def _safe_file(path, header, data=b""):
    raw = header if isinstance(header, bytes) else __import__("json").dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    return path


@pytest.mark.parametrize("header, data, match", [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, "cover 8 bytes"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 12 bytes"),
    ({"a": {"dtype": "X9", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unknown dtype"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "starts at byte 4"),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}, b"", "shape"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "overlaps|starts"),
    (b"[1, 2]", b"", "not a JSON object"), (b"{not json", b"", "damaged"),
])
def test_safetensors_bad_files(tmp_path, header, data, match):
    with pytest.raises(ValueError, match=match):
        load_safetensors(_safe_file(tmp_path / "b.safetensors", header, data))


def test_safetensors_forged_header_length_and_truncation(tmp_path):
    p = tmp_path / "h.safetensors"
    p.write_bytes((10**15).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match="header length"):
        load_safetensors(p)
    p.write_bytes(b"abc")
    with pytest.raises(ValueError, match="shorter than 8"):
        load_safetensors(p)
    good = tmp_path / "g.safetensors"
    save_safetensors({"a": np.arange(100.0)}, good)
    p.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        load_safetensors(p)


def test_safetensors_save_refuses_bad_input(tmp_path):
    with pytest.raises(TypeError, match="dtype object"):
        save_safetensors({"a": np.array([None])}, tmp_path / "x")
    with pytest.raises(ValueError, match="__metadata__"):
        save_safetensors({"__metadata__": np.ones(1)}, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_checkpoint_of_torch_weights_via_ndconv_save(tmp_path):
    """A .pth read without torch can be re-saved as an ndconv checkpoint (buffers included)."""
    tm = torch.nn.BatchNorm1d(3)
    tm(torch.randn(4, 3))
    torch.save(tm.state_dict(), tmp_path / "bn.pth")
    m = nn.BatchNorm1d(3).load_state_dict(load_torch(tmp_path / "bn.pth"))
    ndconv.save(m, tmp_path / "bn.npz")
    back = ndconv.load(tmp_path / "bn.npz")
    np.testing.assert_array_equal(back["running_mean"], tm.running_mean.numpy())
    assert int(back["num_batches_tracked"]) == 1


def test_zip_bomb_record_is_refused_before_expanding(tmp_path):
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl",
                   _pickle({"a": _tensor(_Storage("0", 50 * 2**18), 0, (1,), (1,))}))
        z.writestr("archive/data/0", b"\0" * (50 * 2**20))
    with pytest.raises(ValueError, match="expands"):
        load_torch(path)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int16, torch.complex64,
                                   torch.bfloat16])
def test_big_endian_checkpoint_is_swapped_as_torch_does(tmp_path, dtype):
    t = _random(dtype, (3, 2), 0)
    little = _save({"t": t}, tmp_path / "l.pt", "zip")
    big = tmp_path / "b.pt"
    item = t.element_size()
    with zipfile.ZipFile(little) as zin, zipfile.ZipFile(big, "w") as zout:
        for info in zin.infolist():
            raw = zin.read(info)
            if info.filename.endswith("/byteorder"):
                raw = b"big"
            elif "/data/" in info.filename and not info.filename.endswith("serialization_id"):
                word = 4 if dtype == torch.complex64 else item  # complex: two swapped floats
                raw = np.frombuffer(raw, f"u{word}" if word < 8 else "u8").byteswap().tobytes()
            zout.writestr(info, raw)
    ref = torch.load(big)["t"]
    assert torch.equal(ref.view(torch.uint8) if dtype == torch.bfloat16 else ref,
                       t.view(torch.uint8) if dtype == torch.bfloat16 else t)
    assert_same_tensor(load_torch(big)["t"], ref)



def test_pytorch_03_rebuild_function(tmp_path):
    """torch._utils._rebuild_tensor (no requires_grad), as in PyTorch 0.3 checkpoints."""
    st = _Storage("0", 6)
    pkl = _pickle({"w": _Call(torch._utils._rebuild_tensor, st, 0, (2, 3), (3, 1))})
    path = _zip_checkpoint(tmp_path / "old.pt", pkl, [("0", np.arange(6, dtype=np.float32).tobytes())])
    assert_same_tensor(load_torch(path)["w"], torch.load(path, weights_only=False)["w"])
