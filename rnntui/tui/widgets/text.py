"""Small text helpers shared by the panels: number formats, sparklines, safe sample text."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from rich.cells import cell_len

BLOCKS = "▁▂▃▄▅▆▇█"


def num(x: float | None, width: int = 6) -> str:
    """A number in at most ``width`` characters: 3 significant digits or short scientific."""
    if x is None:
        return "-".rjust(width)
    if isinstance(x, float) and not math.isfinite(x):
        return ("NaN" if math.isnan(x) else ("Inf" if x > 0 else "-Inf")).rjust(width)
    ax = abs(x)
    if ax == 0:
        s = "0"
    elif 0.01 <= ax < 10_000:
        s = f"{x:.3g}"
        if len(s) > width:
            s = f"{x:.{max(0, width - 5)}f}"
    else:
        s = f"{x:.0e}".replace("e-0", "e-").replace("e+0", "e")
        if len(s) < width - 1:
            s = f"{x:.1e}".replace("e-0", "e-").replace("e+0", "e")
    return s.rjust(width)


def fixed(x: float, decimals: int = 4) -> str:
    """``x`` with ``decimals`` places, but never a bare "-0.0000": an entry too small for the places
    shows in short scientific form (its sign and size kept), an exact zero as 0."""
    if x == 0:
        return "0"
    if abs(x) < 0.5 * 10.0**-decimals:
        return f"{x:.1e}".replace("e-0", "e-")
    return f"{x:.{decimals}f}"


def fit_parts(parts: Mapping[str, tuple[str, ...]], width: int, steps: Iterable[str], sep: str = " ") -> dict[str, str]:
    """Choose a form of each part so that all of them, joined by ``sep``, fit in ``width`` cells.

    ``parts`` maps a name to its forms, longest first; a last form "" means the part may be
    dropped. ``steps`` names, in order, the part to shorten next (least useful first): each mention
    moves that part to its next form. Shortening stops as soon as the line fits, so a part is
    always shown whole or not at all; then the steps taken are undone, latest (most useful part)
    first, wherever the line still fits (a part dropped before a wider one may come back).
    Returns the kept parts (name → form) in the order of ``parts``.
    """
    level = dict.fromkeys(parts, 0)

    def chosen() -> dict[str, str]:
        return {name: forms[level[name]] for name, forms in parts.items() if forms[level[name]]}

    def fits() -> bool:
        kept = chosen()
        return sum(cell_len(f) for f in kept.values()) + cell_len(sep) * max(0, len(kept) - 1) <= width

    taken = []
    for name in steps:
        if fits():
            break
        if name in parts and level[name] < len(parts[name]) - 1:
            level[name] += 1
            taken.append(name)
    for name in reversed(taken):
        level[name] -= 1
        if not fits():
            level[name] += 1
    return chosen()


def sparkline(values: np.ndarray, width: int, *, log: bool = True) -> str:
    """Block-character sparkline of ``values`` (the last ``width`` bins), log scale by default."""
    v = np.asarray(values, dtype=float)
    if width <= 0 or v.size == 0:
        return ""
    v = downsample(v, width)
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.log10(np.where(v > 0, v, np.nan))
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return " " * len(v)
    lo, hi = float(finite.min()), float(finite.max())
    span = hi - lo if hi > lo else 1.0
    out = []
    for x in v:
        if not np.isfinite(x):
            out.append("·")
        else:
            out.append(BLOCKS[min(len(BLOCKS) - 1, int((x - lo) / span * (len(BLOCKS) - 1) + 0.5))])
    return "".join(out)


def downsample(v: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` points: means of equal consecutive bins (the last bins kept whole)."""
    v = np.asarray(v, dtype=float)
    if len(v) <= n:
        return v
    edges = np.linspace(0, len(v), n + 1).astype(int)
    return np.add.reduceat(v, edges[:-1]) / np.diff(edges)


def duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"
