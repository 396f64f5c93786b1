"""Small text helpers shared by the panels: number formats, sparklines, safe sample text."""

from __future__ import annotations

import math

import numpy as np

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
