"""Large outputs on whole huge pages (ndconv.core._pages)."""

import resource

import numpy as np
import pytest

import ndconv
from ndconv.core import _pages


@pytest.mark.parametrize("shape, dtype", [((3000, 4000), np.float32), ((3000, 4000, 3), np.uint8),
                                          ((1, 1, 1500, 2001), np.float64)])
def test_large_arrays_start_on_a_huge_page_and_are_plain_c_arrays(monkeypatch, shape, dtype):
    monkeypatch.setattr(_pages, "_THP", True)
    a = _pages.empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype
    assert a.ctypes.data % _pages.HUGE_PAGE == 0
    assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
    a[...] = 7  # every byte of it is ours to write, the block's end included
    assert a.reshape(-1)[-1] == 7 and a.base.nbytes == a.nbytes + _pages.HUGE_PAGE


@pytest.mark.parametrize("thp, shape, dtype", [(True, (100, 100), np.float32),  # small
                                               (False, (3000, 4000), np.float32),  # no THP
                                               (True, (1500, 1500), object)])
def test_small_arrays_object_arrays_and_no_thp_are_np_empty(monkeypatch, thp, shape, dtype):
    monkeypatch.setattr(_pages, "_THP", thp)
    a = _pages.empty(shape, dtype)
    assert a.shape == shape and a.dtype == dtype and a.base is None


def test_thp_detection_follows_the_kernel_setting(monkeypatch, tmp_path):
    import builtins

    real_open = builtins.open
    setting = tmp_path / "enabled"

    def fake_open(path, *args, **kwargs):
        if path == "/sys/kernel/mm/transparent_hugepage/enabled":
            return real_open(setting, *args, **kwargs)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(_pages.sys, "platform", "linux")
    for text, want in (("always madvise [never]\n", False), ("[always] madvise never\n", True)):
        setting.write_text(text)
        assert _pages._thp_available() is want
    monkeypatch.setattr(_pages.sys, "platform", "darwin")
    assert _pages._thp_available() is False


@pytest.mark.skipif(not _pages._thp_available(), reason="no transparent huge pages on this machine")
def test_a_fresh_12mp_output_takes_few_page_faults():
    # 48 MB from mmap: unaligned, ~480 faults (4 KiB pages at both ends);
    # aligned, ~24 (one per 2 MiB page) where the kernel has huge pages free.
    def faults(alloc):
        alloc((3000, 4000), np.float32)  # (the first call may map fresh memory)
        counts = []
        for _ in range(5):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            alloc((3000, 4000), np.float32).fill(1)
            counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        return sorted(counts)[2]

    plain, aligned = faults(np.empty), faults(_pages.empty)
    # (about 12,000 faults: the kernel had no huge page free, both get 4 KiB
    # pages; under 200: the memory was reused, nothing was faulted)
    if not 200 <= plain < 2000:
        pytest.skip(f"np.empty took {plain} faults: no huge pages to compare")
    assert aligned < plain / 4


def test_correlate_of_a_12mp_image_matches_scipy_on_aligned_output():
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(3)
    img = rng.random((3000, 4000), dtype=np.float32)
    k = rng.standard_normal((3, 3)).astype(np.float32)
    got = ndconv.correlate(img, k, mode="same")
    want = scipy_ndimage.correlate(img.astype(np.float64), k.astype(np.float64), mode="constant")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
