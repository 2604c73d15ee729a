"""A 3-D float32 volume through a 5^3 kernel: ndconv on dask vs in memory vs dask-image.

The volume (``--size``^3, float32, default 512^3 = 512 MiB) is written once,
chunk by chunk, to an uncompressed Zarr store. Each variant then reads it,
filters it with the same random 5^3 kernel ('same' size, zero padding) and
writes the result to its own Zarr store, so every variant does the same I/O:

- ``numpy``        read the whole volume, ``ndconv.conv`` in memory, write it;
- ``dask-threads`` ``ndconv.conv`` on ``da.from_zarr`` (dask's threaded
                   scheduler, one thread per core), ``to_zarr``;
- ``dask-slabs``   the same, written with ``ndconv.dask.store_by_slabs``: one
                   slab of chunks (and its halo) at a time, which bounds the
                   memory where dask's order of the whole stencil graph holds
                   most of the input;
- ``dask-cluster`` the same graph as ``dask-threads`` on a ``distributed.LocalCluster`` (worker
                   processes, one thread each, loopback, no dashboard); the
                   cluster's start-up is timed separately;
- ``dask-image``   ``dask_image.ndfilters.correlate(mode='constant')`` (SciPy's
                   ``ndimage.correlate`` per chunk with halos), threaded scheduler.

How memory is measured: each variant runs in a fresh child process; this
script samples the resident set size (RSS) of the child and all its
descendants (the cluster's nanny and worker processes) every 20 ms with
psutil and reports the peak of the sum. ``tracemalloc`` would miss memory
that NumPy and SciPy allocate in worker processes and in C. The peak includes
the interpreter and its imports (the ``idle`` line: a child that imports
everything and exits). Time is the child's own wall clock around
read + filter + write (imports and cluster start-up excluded).

All ndconv variants use ``method='auto'`` (it picks the FFT for a 5^3 kernel)
with ``ndconv.set_num_threads(1)`` inside dask, where the parallelism comes
from the blocks. The outputs are compared with the in-memory one at the end.

Usage::

    python benchmarks/dask_volume.py                  # 512^3, chunks of 128^3
    python benchmarks/dask_volume.py --size 128 --chunk 64   # a quick run
    python benchmarks/dask_volume.py --only dask-threads,dask-image
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

VARIANTS = ("numpy", "dask-threads", "dask-slabs", "dask-cluster", "dask-image")


def _kernel(k):
    return np.random.default_rng(1).standard_normal((k, k, k)).astype(np.float32)


def _write_input(path, size, chunk):
    import dask.array as da
    import zarr

    z = zarr.create_array(
        store=path, shape=(size,) * 3, chunks=(chunk,) * 3, dtype="float32",
        compressors=None,
    )
    x = da.random.default_rng(0).random((size,) * 3, chunks=chunk, dtype=np.float32)
    da.store(x, z, lock=False, scheduler="threads")


def _output(path, like):
    import zarr

    return zarr.create_array(
        store=path, shape=like.shape, chunks=like.chunks, dtype="float32",
        compressors=None,
    )


# --------------------------------------------------------------------------
# the variants (each in its own child process)


def _run_child(variant, inp, out, k):
    import dask
    import dask.array as da
    import zarr

    import ndconv

    w = _kernel(k)
    src = zarr.open_array(inp, mode="r")
    dst = _output(out, src)
    info = {}
    if variant == "numpy":
        t0 = time.perf_counter()
        x = src[...]
        y = ndconv.conv(x[None, None], w[None, None], padding="same")[0, 0]
        dst[...] = y
        info["seconds"] = time.perf_counter() - t0
        return info
    if variant == "dask-image":
        from dask_image import ndfilters

        t0 = time.perf_counter()
        x = da.from_zarr(src)
        y = ndfilters.correlate(x, w, mode="constant", cval=0.0)
        da.store(y, dst, lock=False, scheduler="threads")
        info["seconds"] = time.perf_counter() - t0
        return info
    ndconv.set_num_threads(1)  # dask runs one block per core
    if variant in ("dask-threads", "dask-slabs"):
        from ndconv.dask import store_by_slabs

        t0 = time.perf_counter()
        x = da.from_zarr(src)
        y = ndconv.conv(x[None, None], w[None, None], padding="same")[0, 0]
        if variant == "dask-slabs":
            store_by_slabs(y, dst, scheduler="threads")
        else:
            da.store(y, dst, lock=False, scheduler="threads")
        info["seconds"] = time.perf_counter() - t0
        return info
    if variant == "dask-cluster":
        from distributed import Client, LocalCluster

        t0 = time.perf_counter()
        with LocalCluster(
            n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True,
            dashboard_address=None, host="127.0.0.1", silence_logs=logging.CRITICAL,
        ) as cluster, Client(cluster) as client:
            client.run(ndconv.set_num_threads, 1)
            info["startup_seconds"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            x = da.from_zarr(inp)  # a path: each worker opens the store itself
            y = ndconv.conv(x[None, None], w[None, None], padding="same")[0, 0]
            da.store(y, dst, lock=False)  # the client is the default scheduler
            info["seconds"] = time.perf_counter() - t0
        return info
    if variant == "idle":
        import distributed  # noqa: F401  (the imports' own RSS)

        info["seconds"] = 0.0
        dask.config.get("scheduler", None)
        return info
    raise ValueError(f"unknown variant {variant!r}")


# --------------------------------------------------------------------------
# the parent: run each child, sample its process tree's RSS


def _tree_rss(proc):
    import psutil

    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _measure(variant, inp, out, k):
    import psutil

    cmd = [sys.executable, __file__, "--child", variant, "--input", inp,
           "--output", out, "--kernel", str(k)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    proc = psutil.Process(p.pid)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc))
            done.wait(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    stdout, _ = p.communicate()
    done.set()
    t.join()
    if p.returncode:
        raise RuntimeError(f"variant {variant} failed (exit {p.returncode})")
    info = json.loads(stdout.strip().splitlines()[-1])
    info["peak_rss"] = peak[0]
    return info


def _max_diff(a, b):
    import dask.array as da

    x, y = da.from_zarr(a), da.from_zarr(b)
    return float(abs(x - y).max().compute(scheduler="threads"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512, help="edge of the cube (default 512)")
    ap.add_argument("--chunk", type=int, default=128, help="chunk edge (default 128)")
    ap.add_argument("--kernel", type=int, default=5, help="kernel edge (default 5)")
    ap.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants")
    ap.add_argument("--tmp", default=None, help="folder for the Zarr stores (default: a temp dir)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_run_child(args.child, args.input, args.output, args.kernel)))
        return 0
    variants = [v for v in args.only.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"--only: unknown variant(s) {unknown}; choose from {VARIANTS}")
    root = tempfile.mkdtemp(prefix="ndconv-dask-bench-", dir=args.tmp)
    try:
        inp = os.path.join(root, "input.zarr")
        t0 = time.perf_counter()
        _write_input(inp, args.size, args.chunk)
        mib = args.size**3 * 4 / 2**20
        print(f"# {args.size}^3 float32 ({mib:.0f} MiB), chunks {args.chunk}^3, "
              f"kernel {args.kernel}^3, 'same' zero padding; input written in "
              f"{time.perf_counter() - t0:.1f} s")
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}, NumPy {np.__version__}")
        rows = []
        idle = _measure("idle", inp, os.path.join(root, "idle.zarr"), args.kernel)
        for v in variants:
            info = _measure(v, inp, os.path.join(root, f"{v}.zarr"), args.kernel)
            rows.append((v, info))
            print(f"#   {v}: {info['seconds']:.1f} s, peak RSS {info['peak_rss'] / 2**20:.0f} MiB",
                  flush=True)
        ref = os.path.join(root, "numpy.zarr") if "numpy" in variants else None
        print()
        print("| variant | time (s) | peak RSS (MiB) | max abs diff vs in-memory |")
        print("|---|---:|---:|---:|")
        print(f"| idle (interpreter + imports) | - | {idle['peak_rss'] / 2**20:.0f} | - |")
        for v, info in rows:
            t = f"{info['seconds']:.1f}"
            if "startup_seconds" in info:
                t += f" (+{info['startup_seconds']:.1f} start-up)"
            diff = "-" if ref is None or v == "numpy" else f"{_max_diff(ref, os.path.join(root, f'{v}.zarr')):.2g}"
            print(f"| {v} | {t} | {info['peak_rss'] / 2**20:.0f} | {diff} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
