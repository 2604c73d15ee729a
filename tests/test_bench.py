"""``ndconv bench`` runs from the package (no source tree needed); missing peers are named."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ndconv.cli import main


def test_bench_small_group_prints_rows_and_ratios(capsys):
    pytest.importorskip("torch")
    rc = main(["bench", "--quick", "--only", "small", "--threads", "1", "--repeats", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "## 1 thread" in out
    assert "command: ndconv bench --only small --threads 1 --repeats 1 --quick\n" in out
    assert "digits CNN inference, batch 1" in out and "digits CNN training epoch" in out
    assert "small digits CNN inference, batch 64: ndconv / torch = " in out


def test_bench_runs_without_its_peers_and_says_so(tmp_path):
    # torch hidden as on an install without it: the rows that need it are left
    # out with one line, the others still run.
    code = ("import sys; sys.modules['torch'] = None\n"
            "from ndconv.cli import main\n"
            "sys.exit(main(['bench', '--quick', '--only', 'small,memory', '--threads', '1',"
            " '--repeats', '1', '--same-process']))")  # torch hidden in this process only
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert "skipped: torch is not installed: its rows are left out" in r.stdout
    assert "memory: peak extra" in r.stdout


def test_each_group_runs_in_a_process_of_its_own(capsys):
    # Two groups, two child processes: each measures its own GEMM peak (the
    # line lists two), and the parent never imported torch to time anything.
    code = ("import sys\n"
            "from ndconv.cli import main\n"
            "rc = main(['bench', '--quick', '--only', 'memory,small', '--threads', '1',"
            " '--repeats', '1'])\n"
            "assert 'torch' not in sys.modules, 'the parent timed something itself'\n"
            "sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=600, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    peaks = [ln for ln in r.stdout.splitlines() if ln.startswith("GEMM peak per group's process")]
    assert len(peaks) == 1 and peaks[0].count(",") == 1, r.stdout
    assert "memory: peak extra" in r.stdout and "digits CNN inference, batch 1" in r.stdout


def test_time_interleaved_counts_each_calls_page_faults():
    """A call that touches fresh pages is counted (mmap'd anonymous memory: a
    first write faults each page in), one that touches none is not."""
    import mmap

    pytest.importorskip("resource")
    from ndconv.bench import timing

    pages = 64

    def fresh():
        with mmap.mmap(-1, pages * mmap.PAGESIZE) as m:
            for i in range(pages):
                m[i * mmap.PAGESIZE] = 1

    def none():
        return sum(range(100))

    t = timing.time_interleaved([("fresh", fresh), ("none", none)], repeats=3)
    assert pages <= t.faults["fresh"] <= pages + 16, t.faults
    assert t.faults["none"] <= 2, t.faults
    assert set(t) == {"fresh", "none"} and t["fresh"] > 0


@pytest.mark.parametrize("args, message", [
    (["--only", "nope"], "--only: unknown group(s) ['nope']"),
    (["--threads", "0"], "--threads (='0') must be comma-separated positive ints"),
    (["--threads", "two"], "--threads (='two') must be comma-separated positive ints"),
    (["--repeats", "0"], "--repeats (=0) must be >= 1"),
])
def test_bench_bad_options_are_one_line(args, message, capsys):
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_time_interleaved_times_each_call_after_its_own_settling_call(monkeypatch):
    """Short calls: warm-up, then per round one untimed and one timed call, in
    the order given; a call over SLOW_S is timed once, without settling."""
    from ndconv.bench import timing

    log = []
    clock = {"t": 0.0}

    def fake_clock():
        return clock["t"]

    def make(name, seconds):
        def fn():
            log.append(name)
            clock["t"] += seconds
        return fn

    monkeypatch.setattr(timing.time, "perf_counter", fake_clock)
    monkeypatch.setattr(timing, "SLOW_S", 5.0)
    monkeypatch.setattr(timing, "SETTLE_S", 1.0)
    monkeypatch.setattr(timing, "PAUSE_S", 0.0)
    got = timing.time_interleaved([("a", make("a", 0.5)), ("b", make("b", 2.0)),
                                   ("c", make("c", 6.0))], repeats=3)
    # warm-up: a second untimed call of each one under SLOW_S
    assert log == ["a", "a", "b", "b", "c", "a", "a", "b", "c", "a", "a", "b", "a", "a", "b"]
    assert got == {"a": 0.5, "b": 2.0, "c": 6.0}
    # A first call slowed by one-time costs (compiling, loading kernels) keeps
    # the settling call its later calls need.
    log.clear()
    first = {"n": 0}

    def jit_like():
        first["n"] += 1
        log.append("j")
        clock["t"] += 2.0 if first["n"] == 1 else 0.5

    got = timing.time_interleaved([("j", jit_like)], repeats=2)
    assert log == ["j", "j", "j", "j", "j", "j"]
    assert got == {"j": 0.5}
    # One shorter than WAKE_S gets two settling calls in every round.
    log.clear()
    monkeypatch.setattr(timing, "WAKE_S", 1.0)
    got = timing.time_interleaved([("a", make("a", 0.5)), ("b", make("b", 2.0))], repeats=2)
    assert log == ["a", "a", "b", "b", "a", "a", "a", "b", "a", "a", "a", "b"]
    assert got == {"a": 0.5, "b": 2.0}
