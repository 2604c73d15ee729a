"""``ndconv tour``: the quick report has every section, its figures and its numbers; refusals."""

import contextlib
import io
import os
import re
import sys

import numpy as np
import pytest
from PIL import Image
from tour_report import quick_report

from ndconv import report
from ndconv.cli import main

N_SECTIONS = len(report.SECTIONS)


def inproc(*args, cwd):
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in args])
            except SystemExit as exc:
                rc = exc.code
    finally:
        os.chdir(old)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def quick():
    return quick_report()


def test_quick_tour_succeeds_and_prints_the_lectures_numbers(quick):
    folder, r = quick
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert "y[0, 0] = 0x0 + 1x1 + 3x2 + 4x3 = 19" in r.stdout
    assert "y[1, 1] = 4x0 + 5x1 + 7x2 + 8x3 = 43" in r.stdout
    assert "every row of the 6x7 output is [0, 1, 0, 0, 0, -1, 0]" in r.stdout
    m = re.search(r"tour: (\d+) sections ran, (\d+) skipped, (\d+) failed", r.stdout)
    assert m and m.group(3) == "0"
    assert int(m.group(1)) == N_SECTIONS
    assert [f for f in os.listdir(folder) if f.startswith(".ndconv-tour-")] == []


def test_quick_report_has_every_sections_figures_and_nothing_else(quick):
    folder, _ = quick
    html = (folder / "report" / "index.html").read_text()
    figures = re.findall(r"<img src='([^']+)'", html)
    for number in range(1, N_SECTIONS + 1):
        title = report.section_title(number)
        assert f"<h2>{title}</h2>" in html
        mine = [f for f in figures if f.startswith(f"figures/{number}-")]
        assert mine, f"section {number} has no figure"
        for f in mine:
            with Image.open(folder / "report" / f) as im:
                # 2x PNGs: the page shows them at half their pixel width
                assert im.format == "PNG" and im.size[0] > 400 and im.size[1] > 200
            w = re.search(rf"<img src='{re.escape(f)}' width='(\d+)'", html)
            assert w and abs(int(w.group(1)) * 2 - im.size[0]) <= 2
    assert sorted(os.listdir(folder / "report")) == ["figures", "index.html"]
    assert sorted("figures/" + f for f in os.listdir(folder / "report" / "figures")) \
        == sorted(figures)
    # Every figure has alt text that says something.
    alts = re.findall(r"<img [^>]*alt='([^']*)'", html)
    assert len(alts) == len(figures) and all(len(a) > 40 for a in alts)


def test_report_is_self_contained(quick):
    folder, _ = quick
    html = (folder / "report" / "index.html").read_text()
    # Nothing to fetch: no external script, style sheet, font or image.
    assert not re.search(r"<(script|link|iframe)[^>]+(src|href)=", html)
    assert not re.search(r"(src|url\()\s*=?\s*['\"]?(https?:)?//", html)
    assert "@import" not in html
    # Equations are MathML, a table of contents links every section.
    assert html.count("<math display='block'>") >= 7  # 4 in the derivation, 3 in the layer
    toc = re.findall(r"<li><a href='#(s\d+)'>", html)
    assert toc == [f"s{i}" for i in range(1, N_SECTIONS + 1)]
    assert all(f"<section id='{a}'>" in html for a in toc)


def test_quick_claim_is_converged_or_says_so(quick):
    """--quick must not silently contradict the lecture (the issue's 35% vs 64%)."""
    folder, _ = quick
    html = (folder / "report" / "index.html").read_text()
    table = html.split("data-testid='claim-table'")[1].split("</table>")[0]
    cells = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table)[1:]:
        tds = re.findall(r"<td[^>]*>(.*?)</td>", row)
        cells[tds[1]] = [float(v.split(" ")[0]) for v in tds[3:6]]
    cnn, mlp = cells["CNN (convolution)"], cells["MLP (fully connected)"]
    if "not converged" not in table:
        assert cnn[1] > mlp[1] and cnn[2] > mlp[2]  # shifted 1 and 2 px
    assert "mean ± standard deviation over 2 seeds" in html


def test_force_replaces_the_report_and_leaves_no_stale_figure(tmp_path):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "index.html").write_text("old report")
    (tmp_path / "report" / "notes.txt").write_text("mine")
    rc, out, err = inproc("tour", "--sections", "5", "--out", "report", cwd=tmp_path)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "already holds a report" in err and "--force" in err
    assert (tmp_path / "report" / "index.html").read_text() == "old report"
    rc, out, err = inproc("tour", "--sections", "5", "--out", "report", "--force",
                          cwd=tmp_path)
    assert rc == 0, err
    assert os.listdir(tmp_path / "report" / "figures") == ["5-edge.png"]
    rc, out, err = inproc("tour", "--sections", "7", "--out", "report", "--force",
                          cwd=tmp_path)
    assert rc == 0, err
    html = (tmp_path / "report" / "index.html").read_text()
    assert "figures/7-learn.png" in html and "5-edge" not in html
    # The earlier run's figure is gone; the user's own file is left alone.
    assert os.listdir(tmp_path / "report" / "figures") == ["7-learn.png"]
    assert sorted(os.listdir(tmp_path / "report")) == ["figures", "index.html", "notes.txt"]
    assert [f for f in os.listdir(tmp_path) if f.startswith(".ndconv-tour-")] == []


def test_default_folder_is_fresh_and_never_overwrites(tmp_path):
    (tmp_path / "ndconv-tour").mkdir()
    (tmp_path / "ndconv-tour" / "index.html").write_text("old report")
    rc, out, err = inproc("tour", "--sections", "5", cwd=tmp_path)
    assert rc == 0, err
    assert "report: ndconv-tour-2/index.html" in out
    assert (tmp_path / "ndconv-tour" / "index.html").read_text() == "old report"
    assert (tmp_path / "ndconv-tour-2" / "figures" / "5-edge.png").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--sections", "11"], "--sections"),
    (["--sections", "0"], "--sections"),
    (["--sections", "two"], "--sections"),
    (["--out", "missing/report"], "does not exist"),
    (["--out", "afile"], "not a folder"),
])
def test_tour_refusals_are_one_line(tmp_path, args, fragment):
    (tmp_path / "afile").write_text("x")
    rc, out, err = inproc("tour", *args, cwd=tmp_path)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("ndconv tour: error: ") and fragment in err
    assert sorted(os.listdir(tmp_path)) == ["afile"]


def test_a_missing_library_skips_its_section_and_names_the_extra(tmp_path, monkeypatch):
    # matplotlib absent, as on an install without the cli extra: section 1
    # draws a figure, so it is skipped with the pip line; nothing is drawn.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc, out, err = inproc("tour", "--quick", "--sections", "1", "--out", "r", cwd=tmp_path)
    assert rc == 0, err
    html = (tmp_path / "r" / "index.html").read_text()
    assert re.search(r"  skipped: this needs 'matplotlib', which is not installed", out), out
    assert "tour: 0 sections ran, 1 skipped, 0 failed" in out
    assert "<p class='skip'>skipped: this needs &#x27;matplotlib&#x27;" in html
    assert "<img" not in html


def test_a_broken_ndconv_module_is_a_bug_not_a_skip(tmp_path, monkeypatch):
    # ndconv.plan failing to import is a broken install, never "skipped" (the
    # sections used to catch that and hide real import errors).
    import ndconv.lecture
    from ndconv.cli import build_parser

    build_parser()  # the commands' modules loaded first (as in a run that gets this far)
    monkeypatch.setitem(sys.modules, "ndconv.lecture.plan", None)
    monkeypatch.delattr(ndconv.lecture, "plan", raising=False)
    monkeypatch.delitem(sys.modules, "ndconv.report.why_not_mlp", raising=False)
    monkeypatch.delattr(report, "why_not_mlp", raising=False)
    rc, out, err = inproc("tour", "--quick", "--sections", "1", "--out", "r", cwd=tmp_path)
    assert rc == 1 and "skipped" not in out
    assert err.startswith("ndconv tour: internal error: ") and "plan" in err, err
    assert os.listdir(tmp_path) == []  # no report, no temporary folder left behind


def test_a_failing_section_does_not_lose_the_others(tmp_path, monkeypatch):
    from ndconv.report import learn

    def broken(s):
        raise RuntimeError("boom")

    monkeypatch.setattr(learn, "run", broken)
    rc, out, err = inproc("tour", "--sections", "5,7", "--out", "r", cwd=tmp_path)
    assert rc == 1
    assert "  failed: RuntimeError: boom" in out
    assert "tour: 1 sections ran, 0 skipped, 1 failed" in out
    html = (tmp_path / "r" / "index.html").read_text()
    assert "figures/5-edge.png" in html and "<p class='fail'>failed: RuntimeError: boom</p>" in html


def test_every_step_advances_the_progress_and_the_count_is_known(tmp_path):
    """The progress display's total is right, and it moves during every section."""
    numbers = [1, 2, 3, 4, 5, 7, 10]
    calls = []
    results = report.build(str(tmp_path), numbers, quick=True, log=lambda line: None,
                           step=lambda n, what: calls.append(n))
    assert [st for _, st, _ in results] == ["ok"] * len(numbers)
    for n in numbers:
        assert calls.count(n) == report.section_steps([n], True), n
    # Training advances once per epoch: the digits CNN's epochs are steps.
    assert calls.count(10) >= report.digits.epochs_for(True)


def test_learn_section_states_the_measured_fall(tmp_path):
    """The figure's title says what was measured, not the book's '~10x every 2'."""
    from ndconv.experiments import learn_edge_kernel

    report.build(str(tmp_path), [7], log=lambda line: None)
    html = (tmp_path / "index.html").read_text()
    losses, kernel, _, _ = learn_edge_kernel()
    fall = (losses[0] / losses[-1]) ** (2 / 9)  # geometric mean per 2 of the 9 steps
    assert f"a factor of <strong>{fall:.1f} every 2 iterations</strong>" in html
    assert "10x" not in html and "~10" not in html
    assert 2 < fall < 8
    np.testing.assert_allclose(kernel.ravel(), [1, -1], atol=0.06)
