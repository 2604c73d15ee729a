"""Inference latency and throughput of an imported ONNX network: ndconv against
onnxruntime and PyTorch, in one run.

The network is the ResNet-style test net (tests/onnx_nets.py: BatchNorm,
residual adds, max and global pooling, random weights), exported with
torch.onnx.export(dynamo=False). ndconv runs the file through
ndconv.onnx.load; onnxruntime runs the same file; PyTorch runs the original
module (eval, no_grad). Each repeat times every engine once, in rotating
order, so all three see the same machine load; the median over repeats is
reported with the ratios ndconv / onnxruntime and ndconv / torch (time ratios:
above 1, ndconv is slower). Threads: each library limited to 1, then 2.

    python benchmarks/onnx_inference.py [--repeats 7] [--batches 1,32] [--threads 1,2]
        [--size 64] [--width 16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))  # the test nets, one definition


def timed(fn, min_time=0.2):
    """Seconds per call: enough calls to fill ``min_time``, at least one."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        t = time.perf_counter() - t0
        if t >= min_time:
            return t / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--size", type=int, default=64, help="input height and width")
    ap.add_argument("--width", type=int, default=16, help="channels of the first stage")
    args = ap.parse_args(argv)

    import onnxruntime as ort
    import torch

    import ndconv
    import ndconv.onnx as nx
    from onnx_nets import ResNetish, _randomize_bn

    torch.manual_seed(0)
    model = _randomize_bn(ResNetish(width=args.width)).eval()
    shape = (3, args.size, args.size)
    path = os.path.join(tempfile.mkdtemp(), "resnet.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, *shape),), path, dynamo=False,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    net = nx.load(path)
    params = net.num_parameters()
    print(f"ResNet-style net, width {args.width}, input 3x{args.size}x{args.size}, "
          f"{params:,} parameters, {len(net.nodes)} ONNX nodes; median of {args.repeats} "
          "repeats, interleaved")
    print(f"{'threads':>7} {'batch':>5} {'ndconv ms':>10} {'ort ms':>8} {'torch ms':>9} "
          f"{'nd/ort':>7} {'nd/torch':>8} {'ndconv img/s':>13}")
    for threads in (int(t) for t in args.threads.split(",")):
        ndconv.set_num_threads(threads)
        torch.set_num_threads(threads)
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        for batch in (int(b) for b in args.batches.split(",")):
            x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
            tx = torch.from_numpy(x)
            with torch.no_grad():
                ref = model(tx).numpy()
            y = net(x)
            assert np.allclose(y, ref, rtol=1e-3, atol=1e-4), "ndconv and torch disagree"
            engines = {
                "ndconv": lambda: net.infer(x),
                "ort": lambda: sess.run(None, {"x": x}),
                "torch": lambda: model(tx),
            }
            times = {k: [] for k in engines}
            with torch.no_grad():
                for fn in engines.values():
                    fn()  # warm up
                for r in range(args.repeats):
                    names = list(engines)
                    names = names[r % 3:] + names[:r % 3]  # rotate the order
                    for k in names:
                        times[k].append(timed(engines[k]))
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"{threads:>7} {batch:>5} {med['ndconv'] * 1e3:>10.2f} {med['ort'] * 1e3:>8.2f} "
                  f"{med['torch'] * 1e3:>9.2f} {med['ndconv'] / med['ort']:>7.1f} "
                  f"{med['ndconv'] / med['torch']:>8.1f} {batch / med['ndconv']:>13.1f}")


if __name__ == "__main__":
    main()
