"""What a section writes to, and the page it becomes.

A :class:`Section` collects HTML fragments (paragraphs, MathML, tables,
figures) and advances the progress display one step at a time; :func:`render`
puts the sections into ``assets/template.html`` with the style sheet and the
widget's script inlined, so ``index.html`` needs nothing but its ``figures/``
folder beside it and makes no network request.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from importlib import resources
from typing import Any, Literal, overload

FIGURES = "figures"  # the folder beside index.html that holds every figure
DPI = 200            # matplotlib inches are drawn at 100 CSS px: 2x for high-DPI screens
CSS_PX_PER_INCH = 100


class Skip(Exception):
    """A section's library parts are not available; the message says which."""


def esc(value: object) -> str:
    """``value`` as HTML text."""
    return html.escape(str(value), quote=True)


def num(n: int | float) -> str:
    """An integer with thousands separators: 3,600,000,100."""
    return f"{int(n):,}"


def _plain(fragment: str) -> str:
    """The text of an HTML fragment, for the console."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


class Section:
    """One section of the report being written.

    Parameters
    ----------
    number : int
        1 to 10, the lecture's order.
    title : str
    folder : str
        The report folder; figures go to ``folder/figures``.
    quick : bool
        Smaller data and shorter training.
    seed : int
    log : callable
        ``log(line)`` prints a line on the console.
    step : callable
        ``step(what)`` advances the progress display by one step.
    """

    def __init__(self, number: int, title: str, folder: str, quick: bool, seed: int,
                 log: Callable[[str], object], step: Callable[[str], object]) -> None:
        self.number, self.title = number, title
        self.anchor = f"s{number}"
        self.folder, self.quick, self.seed = folder, quick, seed
        self._log, self._step = log, step
        self.parts: list[str] = []
        self.figures: list[str] = []

    # -- text ---------------------------------------------------------------

    def log(self, line: str) -> None:
        self._log("  " + line)

    def step(self, what: str) -> None:
        self._step(what)

    def p(self, fragment: str, *, quiet: bool = False) -> None:
        """A paragraph of trusted HTML (escape values with :func:`esc`); also printed."""
        self.parts.append(f"<p>{fragment}</p>")
        if not quiet:
            self.log(_plain(fragment))

    def html(self, fragment: str) -> None:
        """Raw HTML (the widget, a list), not printed."""
        self.parts.append(fragment)

    def h3(self, text: str) -> None:
        self.parts.append(f"<h3>{esc(text)}</h3>")

    def math(self, mathml: str, label: str | None = None) -> None:
        """A displayed equation: ``mathml`` is the MathML inside ``<math>``."""
        lab = f"<span class='eqlabel'>{esc(label)}</span>" if label else ""
        self.parts.append(f"<div class='eq'><math display='block'>{mathml}</math>{lab}</div>")

    def pre(self, text: str, cls: str = "out") -> None:
        """Verbatim text: an error message, a printed sum; also printed."""
        self.parts.append(f"<pre class='{cls}'>{esc(text)}</pre>")
        for line in text.splitlines():
            self.log("  " + line)

    def row(self, *fragments: str) -> None:
        """Fragments (small tables) side by side, wrapping on a narrow screen."""
        self.parts.append("<div class='side'>" + "".join(fragments) + "</div>")

    @overload
    def table(self, head: Sequence[object], rows: Iterable[Sequence[object]], *,
              numeric: Collection[int] = ..., caption: str | None = ...,
              testid: str | None = ..., quiet: bool = ...,
              inline: Literal[False] = ...) -> None: ...
    @overload
    def table(self, head: Sequence[object], rows: Iterable[Sequence[object]], *,
              numeric: Collection[int] = ..., caption: str | None = ...,
              testid: str | None = ..., quiet: bool = ..., inline: Literal[True]) -> str: ...

    def table(self, head: Sequence[object], rows: Iterable[Sequence[object]], *,
              numeric: Collection[int] = (), caption: str | None = None,
              testid: str | None = None, quiet: bool = False,
              inline: bool = False) -> str | None:
        """An HTML table; ``numeric`` holds the column indices to right-align.

        Cells are text (escaped) unless wrapped in :class:`Raw`.
        """
        def cell(tag: str, i: int, v: object) -> str:
            cls = " class='num'" if i in numeric else ""
            body = v.html if isinstance(v, Raw) else esc(v)
            return f"<{tag}{cls}>{body}</{tag}>"

        tid = f" data-testid='{esc(testid)}'" if testid else ""
        out = [f"<div class='tablewrap'><table{tid}>"]
        if caption:
            out.append(f"<caption>{esc(caption)}</caption>")
        out.append("<thead><tr>" + "".join(cell("th", i, h) for i, h in enumerate(head))
                   + "</tr></thead><tbody>")
        for r in rows:
            out.append("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>")
        out.append("</tbody></table></div>")
        if inline:  # returned for row(), not added
            return "".join(out)
        self.parts.append("".join(out))
        if not quiet:
            for r in rows:
                self.log("  " + " | ".join(_plain(v.html) if isinstance(v, Raw) else str(v)
                                           for v in r))
        return None

    # -- figures ------------------------------------------------------------

    def figure(self, fig: Any, name: str, alt: str, caption: str) -> None:
        """Save a matplotlib figure as ``figures/N-name.png`` at 2x and show it.

        ``alt`` describes what the image shows (for a reader who cannot see
        it); ``caption`` is printed under it.
        """
        import matplotlib.pyplot as plt
        from PIL import Image

        filename = f"{FIGURES}/{self.number}-{name}.png"
        path = os.path.join(self.folder, filename)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.05)
        plt.close(fig)
        with Image.open(path) as im:
            w, h = im.size
        scale = CSS_PX_PER_INCH / DPI
        self.parts.append(
            f"<figure><img src='{esc(filename)}' width='{round(w * scale)}' "
            f"height='{round(h * scale)}' alt='{esc(alt)}'>"
            f"<figcaption>{caption}</figcaption></figure>")
        self.figures.append(filename)
        self.log(f"figure: {filename}")


class Raw:
    """A table cell holding trusted HTML."""

    def __init__(self, fragment: str) -> None:
        self.html = fragment


def _asset(name: str) -> str:
    return resources.files("ndconv.report").joinpath("assets").joinpath(name).read_text("utf-8")


def render(results: Iterable[tuple[Section, str, float]], *, quick: bool, seconds: float,
           sections_run: str) -> str:
    """The whole page as a string.

    Parameters
    ----------
    results : list of (Section, status, seconds)
        ``status`` is ``'ok'``, ``'skipped: ...'`` or ``'failed: ...'``.
    quick : bool
    seconds : float
        Wall time of the run.
    sections_run : str
        What ran, for the header ("all 10 sections", "sections 2, 5").
    """
    toc, body = [], []
    for s, status, secs in results:
        toc.append(f"<li><a href='#{s.anchor}'>{esc(s.title)}</a></li>")  # title has its number
        body.append(f"<section id='{s.anchor}'><h2>{esc(s.title)}</h2>")
        if status != "ok":
            cls = "skip" if status.startswith("skipped") else "fail"
            body.append(f"<p class='{cls}'>{esc(status)}</p>")
        body.extend(s.parts)
        if status == "ok":
            body.append(f"<p class='time'>computed in {secs:.1f} s</p>")
        body.append("</section>")
    run = (f"{'A quick run (--quick: less data, shorter training)' if quick else 'A full run'}"
           f" of {esc(sections_run)}, {seconds:.0f} s in all")
    page = _asset("template.html")
    for key, value in {"{{STYLE}}": _asset("style.css"), "{{SCRIPT}}": _asset("widget.js"),
                       "{{TOC}}": "\n".join(toc), "{{BODY}}": "\n".join(body),
                       "{{RUN}}": run}.items():
        page = page.replace(key, value)
    return page
