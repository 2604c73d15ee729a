"""Tiny MathML builders: the lecture's formulas, typeset natively by the browser.

Each function returns a MathML fragment (a string); :meth:`Section.math`
wraps a fragment in ``<math display="block">``.
"""

from __future__ import annotations


def i(name: object) -> str:
    """An identifier (italic for one letter)."""
    return f"<mi>{name}</mi>"


def n(value: object) -> str:
    return f"<mn>{value}</mn>"


def o(op: object) -> str:
    return f"<mo>{op}</mo>"


def row(*parts: str) -> str:
    return "<mrow>" + "".join(parts) + "</mrow>"


def sub(base: str, *index: str) -> str:
    """``base`` with the comma-separated ``index`` as subscript: w_{i,j,k,l}."""
    idx = o(",").join(index)
    return f"<msub>{base if base.startswith('<') else i(base)}<mrow>{idx}</mrow></msub>"


def sum_(under: str | None = None, over: str | None = None) -> str:
    """A summation sign with limits."""
    if under and over:
        return f"<munderover>{o('∑')}{under}{over}</munderover>"
    if under:
        return f"<munder>{o('∑')}{under}</munder>"
    return o("∑")


def frac(num: str, den: str) -> str:
    return f"<mfrac>{num}{den}</mfrac>"


def floor(x: str) -> str:
    return row(o("⌊"), x, o("⌋"))


def text(t: object) -> str:
    return f"<mtext>{t}</mtext>"


def idx(*names: str) -> list[str]:
    """Index expressions like ``i+a``: each name is a string such as "i+a"."""
    out = []
    for name in names:
        parts = []
        for ch in name:
            parts.append(o(ch) if ch in "+-−" else n(ch) if ch.isdigit() else i(ch))
        out.append(row(*parts) if len(parts) > 1 else parts[0])
    return out
