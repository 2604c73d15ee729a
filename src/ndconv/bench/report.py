"""The benchmark's table, its summary against the targets, and the machine line."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
from collections.abc import Iterable, Sequence

import numpy as np

from .timing import Row


def fmt_table(rows: Iterable[Row], markdown: bool) -> str:
    head = ["group", "case", "implementation", "median ms", "GFLOP/s", "% SGEMM peak",
            "ndconv / this", "page faults / call"]
    body = []
    for r in rows:
        if r["ms"] is None:
            body.append([r["group"], r["case"], r["impl"], "see summary", "", "", "", ""])
            continue
        faults = r.get("faults")
        body.append([
            r["group"], r["case"], r["impl"], f"{r['ms']:.2f}", f"{r['gflops']:.1f}",
            f"{100 * r['peak']:.1f}", "" if r["ratio"] is None else f"{r['ratio']:.2f}",
            "" if faults is None else f"{faults:.0f}",
        ])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def geomean(values: Iterable[float]) -> float:
    values = [v for v in values if v]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def summary(rows: Sequence[Row]) -> str:
    """The ratios the targets in BENCHMARKS.md (issue 12) refer to, one line each."""
    out = []

    def ratios(group: str, impl_prefix: str) -> list[Row]:
        return [r for r in rows if r["group"] == group and r["impl"].startswith(impl_prefix)
                and r["ratio"]]

    def spread(rs: list[Row]) -> str:
        """``'<geomean>, worst <ratio> (<case>)'`` of some rows' ratios."""
        worst = max(rs, key=lambda r: r["ratio"])
        return (f"{geomean([r['ratio'] for r in rs]):.2f}, worst {worst['ratio']:.2f} "
                f"({worst['case']})")

    for group, peer, target in [("cnn-fwd", "torch", "<= 1.0"), ("cnn-fwdbwd", "torch", "<= 1.0"),
                                ("large", "torch", "<= 0.33")]:
        rs = ratios(group, peer)
        if rs:
            mean, worst = spread(rs).split(", ", 1)
            out.append(f"{group}: geomean ndconv/{peer} = {mean} (target {target}); {worst}")
    for r in ratios("small", "torch"):
        out.append(f"small {r['case']}: ndconv / torch = {r['ratio']:.2f} (target <= 1.0)")
    large = [r for r in rows if r["group"] == "large"]
    for case in dict.fromkeys(r["case"] for r in large):
        best = min((r for r in large if r["case"] == case and r["impl"].startswith("scipy")),
                   key=lambda r: r["ms"], default=None)
        nd = next(r for r in large if r["case"] == case and r["impl"].startswith("ndconv"))
        if best:
            out.append(f"large {case}: ndconv / best SciPy ({best['impl']}) = "
                       f"{nd['ms'] / best['ms']:.2f} (target <= 1.0)")
    for r in ratios("image", "opencv"):
        out.append(f"image {r['case']}: ndconv / OpenCV = {r['ratio']:.2f} (target <= 1.0)")
    filt = ratios("filter", "filter_image")
    if filt:
        out.append(f"filter: ndconv filter (CLI) / filter_image geomean {spread(filt)} "
                   "(target <= 1.5)")
    cv = ratios("filter", "opencv")
    if cv:
        out.append(f"filter: ndconv filter (CLI) / OpenCV filter2D in memory geomean {spread(cv)}")
    for r in rows:
        if r["group"] == "memory":
            out.append(f"memory: {r['note']} (target <= 2.0 x)")
    return "\n".join(out)


def _version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


def machine(threads: int, peak: float) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for ln in fh:
                if ln.startswith("model name"):
                    cpu = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    # Versions from the installed distributions' metadata: the parent process of
    # the groups never imports the peers itself.
    versions = ", ".join(f"{name} {v}" for name, v in (
        ("numpy", np.__version__), ("scipy", _version("scipy")), ("torch", _version("torch")),
        ("opencv", _version("opencv-python-headless", "opencv-python",
                            "opencv-contrib-python"))) if v)
    return (f"{cpu}; {threads} thread{'s' if threads > 1 else ''}; "
            f"measured SGEMM peak {peak:.0f} GFLOP/s; "
            f"load average at start {load:.2f}; Python {platform.python_version()}, {versions}")


