"""ndconv on dask arrays: lazy, chunked with halos, equal to the NumPy path.

The NumPy path is itself checked against PyTorch elsewhere; here the chunked
result must equal it for every padding form and mode, stride, dilation and
chunking (including chunks smaller than the kernel, where a periodic boundary
went wrong in dask-image, issue 242), and a few cases are checked against
PyTorch and SciPy directly. One group of tests runs on a LocalCluster with two
worker processes on loopback.
"""

import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import ndconv  # noqa: E402

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

MODES = ("zeros", "reflect", "replicate", "circular")
SHAPES = {1: (11,), 2: (7, 9), 3: (5, 6, 4)}
# Chunk edges smaller than the kernel (3) and off the stride grid; fewer in
# 3-D, where chunks of one make hundreds of tasks.
CHUNKS = {1: (1, 2, 4), 2: (1, 3), 3: (2,)}


def _case(n, seed=0, dtype=np.float64, batch=None, cin=4, cout=6, k=3, groups=2):
    rng = np.random.default_rng(seed)
    batch = batch or (2 if n < 3 else 1)
    x = rng.standard_normal((batch, cin, *SHAPES[n])).astype(dtype)
    w = rng.standard_normal((cout, cin // groups, *(k,) * n)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    return x, w, b


def _chunked(x, c):
    """Batch in chunks of one, channels split too (the code must rejoin them)."""
    return da.from_array(x, chunks=(1, max(1, x.shape[1] // 2)) + (c,) * (x.ndim - 2))


def _same(got, ref):
    """Equal up to the last bits: the direct method sums the taps in a fixed
    order, but BLAS may round a block's channel sums differently from the
    whole array's (a wrong halo or boundary cell is off by O(1))."""
    assert got.shape == ref.shape and got.dtype == ref.dtype
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------
# values: every padding form and mode, stride, dilation, chunking


PADDINGS = [0, 1, "same", "valid", "full", "pairs"]


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", PADDINGS)
def test_conv_equals_numpy_every_padding(n, mode, padding):
    x, w, b = _case(n, seed=n)
    if padding == "pairs":
        padding = ((2, 0),) * n
    # 'full' pads d*(k-1) = 2 per side: fine for every mode at these sizes.
    ref = ndconv.conv(x, w, b, 1, padding, 1, 2, mode, method="direct")
    for c in CHUNKS[n]:
        got = ndconv.conv(_chunked(x, c), w, b, 1, padding, 1, 2, mode, method="direct")
        assert got.shape == ref.shape
        _same(got.compute(scheduler="sync"), ref)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stride, dilation, padding", [(2, 1, 1), (3, 1, 2), (1, 2, 2), (2, 2, (1, 3)), (3, 2, 0)])
def test_conv_equals_numpy_stride_dilation(n, mode, stride, dilation, padding):
    x, w, b = _case(n, seed=10 + n, k=2 if stride == 3 else 3)
    if isinstance(padding, tuple):
        padding = (padding,) * n
    ref = ndconv.conv(x, w, b, stride, padding, dilation, 2, mode, method="direct")
    for c in CHUNKS[n]:
        xd = _chunked(x, c)
        got = ndconv.conv(xd, w, b, stride, padding, dilation, 2, mode, method="direct")
        _same(got.compute(scheduler="sync"), ref)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_auto_method_float32_unbatched(n):
    x, w, b = _case(n, seed=20, dtype=np.float32, cin=3, cout=5, groups=1)
    x = x[0]
    ref = ndconv.conv(x, w, b, padding="same", padding_mode="reflect")
    got = ndconv.conv(da.from_array(x, chunks=2), w, b, padding="same", padding_mode="reflect")
    out = got.compute(scheduler="sync")
    assert out.dtype == np.float32 and out.shape == ref.shape
    # 'auto' may pick a different algorithm for a block than for the whole
    # array, so equality is up to float32 rounding.
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_circular_against_torch_chunks_smaller_than_kernel():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 9, 10))
    w = rng.standard_normal((3, 2, 5, 5))
    ref = F.conv2d(F.pad(torch.from_numpy(x), (2, 2, 2, 2), mode="circular"), torch.from_numpy(w))
    for c in (1, 2, 3):
        got = ndconv.conv(da.from_array(x, chunks=(1, 2, c, c)), w, padding=2, padding_mode="circular")
        np.testing.assert_allclose(got.compute(scheduler="sync"), ref.numpy(), rtol=1e-12, atol=1e-12)


def test_circular_commutes_with_roll():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 1, 12, 10))
    w = rng.standard_normal((1, 1, 3, 4))
    xd = da.from_array(x, chunks=(1, 1, 5, 3))
    y = ndconv.conv(xd, w, padding="same", padding_mode="circular").compute(scheduler="sync")
    yr = ndconv.conv(da.roll(xd, (3, -2), axis=(2, 3)), w, padding="same", padding_mode="circular")
    np.testing.assert_allclose(yr.compute(scheduler="sync"), np.roll(y, (3, -2), axis=(2, 3)), atol=1e-12)


@given(
    n=st.integers(1, 3),
    data=st.data(),
)
@settings(max_examples=30, deadline=None)
def test_random_arguments_match_numpy(n, data):
    S = tuple(data.draw(st.integers(3, 9)) for _ in range(n))
    k = data.draw(st.integers(1, 3))
    s = data.draw(st.integers(1, 3))
    d = data.draw(st.integers(1, 2))
    mode = data.draw(st.sampled_from(MODES))
    pad = tuple((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in range(n))
    chunks = tuple(data.draw(st.integers(1, m)) for m in S)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.standard_normal((2, 2, *S))
    w = rng.standard_normal((3, 2, *(k,) * n))
    try:
        ref = ndconv.conv(x, w, None, s, pad, d, 1, mode, method="direct")
    except ValueError as e:  # the same refusal, before any compute
        with pytest.raises(ValueError) as info:
            ndconv.conv(da.from_array(x, chunks=(1, 1, *chunks)), w, None, s, pad, d, 1, mode)
        assert str(info.value) == str(e)
        return
    got = ndconv.conv(da.from_array(x, chunks=(1, 1, *chunks)), w, None, s, pad, d, 1, mode,
                      method="direct")
    _same(got.compute(scheduler="sync"), ref)


# --------------------------------------------------------------------------
# correlate / convolve (scipy.signal semantics)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("mode", ["valid", "same", "full"])
@pytest.mark.parametrize("flip", [False, True])
def test_correlate_convolve_against_scipy(n, mode, flip):
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(5)
    x = rng.standard_normal(SHAPES[n])
    k = rng.standard_normal((3, 2, 4)[:n])
    fn, ref_fn = (ndconv.convolve, signal.convolve) if flip else (ndconv.correlate, signal.correlate)
    ref = ref_fn(x, k, mode=mode, method="direct") + 0.5
    for c in CHUNKS[n]:
        got = fn(da.from_array(x, chunks=c), k, 0.5, mode)
        np.testing.assert_allclose(got.compute(scheduler="sync"), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.float32])
def test_correlate_dtypes_follow_numpy(dtype):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((8, 9)) * 5).astype(dtype)
    k = (rng.standard_normal((3, 2)) * 2).astype(dtype)
    for bias in (0.0, 2):
        ref = ndconv.correlate(x, k, bias, "same", method="direct")
        got = ndconv.correlate(da.from_array(x, chunks=2), k, bias, "same", method="direct")
        assert got.dtype == ref.dtype
        out = got.compute(scheduler="sync")
        assert out.dtype == ref.dtype
        np.testing.assert_array_equal(out, ref)


def test_valid_with_larger_kernel_swaps_like_scipy():
    signal = pytest.importorskip("scipy.signal")
    x = np.arange(4.0)
    k = np.arange(7.0) ** 2
    got = ndconv.correlate(da.from_array(x, chunks=2), k)
    np.testing.assert_allclose(got.compute(scheduler="sync"), signal.correlate(x, k, "valid"))


# --------------------------------------------------------------------------
# laziness, chunks, errors


def _boom(block):
    raise RuntimeError("computed")


def test_lazy_until_asked():
    x = da.zeros((1, 2, 20, 20), chunks=(1, 2, 7, 7)).map_blocks(_boom, dtype=np.float64)
    w = np.ones((3, 2, 3, 3))
    y = ndconv.conv(x, w, np.zeros(3), stride=2, padding=1, padding_mode="reflect")
    z = ndconv.correlate(x[0, 0], np.ones((3, 3)), mode="full")
    assert y.shape == (1, 3, 10, 10) and z.shape == (22, 22)
    with pytest.raises(RuntimeError, match="computed"):
        y.compute(scheduler="sync")


def test_chunk_layout():
    x = da.zeros((4, 3, 40, 30), chunks=(2, 1, 10, 15))
    y = ndconv.conv(x, np.ones((5, 3, 3, 3)), stride=2, padding=1)
    assert y.chunks[0] == (2, 2)  # batch chunks kept
    assert y.chunks[1] == (5,)  # channels whole
    assert y.chunks[2] == (5, 5, 5, 5) and y.chunks[3] == (8, 7)  # input chunks / stride


def test_core_does_not_import_dask():
    code = "import sys, ndconv; ndconv.conv; assert 'dask' not in sys.modules, 'dask imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


BAD = [
    dict(stride=0),
    dict(padding="same", stride=2),
    dict(padding=-1),
    dict(padding_mode="wrap"),
    dict(padding=9, padding_mode="reflect"),
    dict(dilation=9),
    dict(groups=3),
    dict(method="nope"),
    dict(bias=np.zeros(2)),
]


@pytest.mark.parametrize("kwargs", BAD, ids=[str(k) for k in BAD])
def test_errors_same_as_numpy(kwargs):
    x = np.zeros((1, 2, 8, 8))
    w = np.zeros((4, 2, 3, 3))
    with pytest.raises((ValueError, TypeError)) as ref:
        ndconv.conv(x, w, **kwargs)
    with pytest.raises(ref.type) as got:
        ndconv.conv(da.from_array(x, chunks=3), w, **kwargs)
    assert str(got.value) == str(ref.value)


def test_huge_window_is_refused_before_computing():
    # 'same' with dilation 100000: every block's window is about 200000 x
    # 200000 cells; NumPy refuses it, and so must the lazy graph, not np.block.
    from ndconv.plan import MemoryLimitError, memory_limit

    x, w = np.zeros((1, 1, 20, 30)), np.ones((1, 1, 3, 3))
    with memory_limit("1GB"):
        with pytest.raises(MemoryLimitError):
            ndconv.conv(x, w, padding="same", dilation=100000)
        with pytest.raises(MemoryLimitError):
            ndconv.conv(da.from_array(x, chunks=10), w, padding="same", dilation=100000)


def test_errors_specific_to_dask():
    w = np.zeros((1, 1, 3))
    with pytest.raises(TypeError, match="`x` must be float16, .*, got dtype bool"):
        ndconv.conv(da.zeros((1, 1, 8), dtype=bool), w)
    with pytest.raises(TypeError, match="`x` .*dtype float32.* and `weight` .*float64"):
        ndconv.conv(da.zeros((1, 1, 8), dtype=np.float32), w)
    with pytest.raises(TypeError, match="`weight` must be an in-memory array"):
        ndconv.conv(da.zeros((1, 1, 8)), da.zeros((1, 1, 3)))
    x = da.zeros(10)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        ndconv.conv(x[x > 0][None, None], w)
    with pytest.raises(ValueError, match="is empty in dim 2"):  # NumPy's message
        ndconv.conv(da.zeros((1, 1, 0)), w)
    with pytest.raises(ValueError, match="ndim 3 or 2"):
        ndconv.conv(da.zeros((1, 1, 1, 8)), w)
    with pytest.raises(ValueError, match="`mode` \\(='nope'\\)"):
        ndconv.correlate(da.zeros(8), np.ones(3), mode="nope")
    with pytest.raises(ValueError, match="at least as large"):
        ndconv.correlate(da.zeros((8, 2)), np.ones((3, 3)))


# --------------------------------------------------------------------------
# a LocalCluster: two worker processes on loopback, no dashboard


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        host="127.0.0.1", memory_limit="1GiB",
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def test_local_cluster(client):
    for n in (1, 2, 3):
        x, w, b = _case(n, seed=30 + n)
        for mode, stride, c in (("circular", 1, 2), ("reflect", 2, 3)):
            pad = 1 if stride > 1 else "same"
            ref = ndconv.conv(x, w, b, stride, pad, 1, 2, mode, method="direct")
            got = ndconv.conv(_chunked(x, c), w, b, stride, pad, 1, 2, mode, method="direct")
            _same(client.compute(got).result(), ref)
        xd = da.from_array(x[0, 0], chunks=2)
        k = x[0, 1][(slice(0, 3),) * n]
        np.testing.assert_array_equal(
            client.compute(ndconv.convolve(xd, k, 1.0, "full", method="direct")).result(),
            ndconv.convolve(x[0, 0], k, 1.0, "full", method="direct"),
        )


def test_store_by_slabs():
    x, w, b = _case(3, seed=40)
    ref = ndconv.conv(x, w, b, 1, "same", 1, 2, "replicate", method="direct")
    y = ndconv.conv(_chunked(x, 2), w, b, 1, "same", 1, 2, "replicate", method="direct")
    from ndconv.dask import store_by_slabs

    for axis in (0, 2, -1):
        out = np.full(ref.shape, np.nan)
        store_by_slabs(y, out, axis=axis, scheduler="sync")
        _same(out, ref)
    with pytest.raises(ValueError, match="must have the shape"):
        store_by_slabs(y, np.empty((1, 2)))
    with pytest.raises(TypeError, match="dask array"):
        store_by_slabs(ref, np.empty(ref.shape))
