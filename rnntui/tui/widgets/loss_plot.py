"""LossPlot: the training loss (raw and smoothed) and the validation loss over steps, with change marks.

Everything the plot draws is worked out here from the snapshot's raw histories and handed to
plotext as plain finite numbers with explicit limits and ticks, on a figure built afresh at
every render:

- non-finite values are dropped, and on the log scale values ≤ 0 too, before plotext sees them;
- the log scale is log10 of the values on a linear axis, labelled with the values (plotext's own
  log scale takes log10 of its data in place on every build, so a second render of the same
  data, as a resize does, took the log of a log and failed);
- the y ticks are round (1-2-5 steps; on the log scale decades or 1, 2, 5 per decade) and sit on
  evenly spaced rows where the axis is linear in them;
- the EMA is computed here from the raw loss history with the chosen decay, and the window
  (whole run or the last N steps) sets the x range; the y range fits what is shown, with the
  raw loss drawn as its per-column minimum and maximum, so early values are not averaged away.

Only this module knows the plot library, so a change of library stays here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from rich.text import Text
from textual.color import Color
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from ...trainer import ChangeKind

#: The x window: the whole run, or the last N steps (the w key cycles through them).
WINDOWS: tuple[int | None, ...] = (None, 10_000, 1_000, 200)
#: The EMA decays per step (the e key cycles through them); 0 shows the raw loss alone.
DECAYS: tuple[float, ...] = (0.98, 0.995, 0.999, 0.9, 0.0)
#: Values beyond this are treated as not finite: differences of two of them would overflow.
MAX_ABS = 1e300
#: Step numbers beyond this are not real (a million steps a second for thirty years); up to it
#: a float still tells neighbouring steps apart.
MAX_STEP = 1e15
#: The smallest plot (inside the border) that draws curves; below it a one-line summary.
MIN_WIDTH, MIN_HEIGHT = 16, 4

# Each line's glyph, as drawn and as the legend shows it (the glyphs tell them apart without colour).
RAW_MARKER, EMA_MARKER, VAL_MARKER = "·", "hd", "×"
LEGEND = {"raw": "·", "ema": "▄", "val": "×", "mark": "│"}


# -- what the user chose --------------------------------------------------------
@dataclass(frozen=True)
class View:
    log: bool = False
    window: int | None = None  # None: the whole run
    decay: float = DECAYS[0]   # 0: no smoothing
    marks: bool = True

    def window_label(self) -> str:
        return "all steps" if self.window is None else f"last {step_label(self.window)}"

    def decay_label(self) -> str:
        return "raw" if self.decay <= 0 else f"ema {f'{self.decay:g}'[1:]}"  # 0.98 → "ema .98"


def cycle(values: tuple, current):
    return values[(values.index(current) + 1) % len(values)] if current in values else values[0]


# -- colours ----------------------------------------------------------------------
@dataclass(frozen=True)
class Palette:
    """One colour per line, for the plot and for the title and legend alike (from the app's theme)."""

    raw: str
    ema: str
    val: str
    mark: str

    @classmethod
    def from_theme(cls, variables: dict[str, str]) -> Palette:
        def get(name: str, default: str) -> Color:
            try:
                return Color.parse(variables.get(name, default))
            except Exception:  # a theme may leave a variable unset or in a form Color cannot read
                return Color.parse(default)

        fg, bg = get("foreground", "#e0e0e0"), get("surface", "#1e1e1e")

        def legible(colour: Color, contrast: float = 0.45) -> str:
            """``colour`` moved towards the foreground until it stands out from the plot's background
            (on a dark theme and on a light one alike)."""
            for t in np.linspace(0.0, 1.0, 21):
                mixed = colour.blend(fg, float(t))
                if abs(mixed.brightness - bg.brightness) >= contrast:
                    break
            return mixed.hex

        # the lines in the theme's colours, the raw loss a mid grey, the change marks fainter still
        return cls(raw=bg.blend(fg, 0.55).hex, ema=legible(get("primary", "#0178d4")),
                   val=legible(get("warning", "#ffa62b")), mark=bg.blend(fg, 0.3).hex)

    @staticmethod
    def rgb(hex_colour: str) -> tuple[int, int, int]:
        return Color.parse(hex_colour).rgb


DEFAULT_PALETTE = Palette.from_theme({})


# -- numbers ----------------------------------------------------------------------
def finite_pairs(x, y) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) as float arrays of equal length, without the pairs that are not finite or out of range."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & np.isfinite(y) & (np.abs(x) <= MAX_STEP) & (np.abs(y) <= MAX_ABS)
    return x[ok], y[ok]


def ema(steps: np.ndarray, values: np.ndarray, decay: float) -> np.ndarray:
    """Exponential moving average with ``decay`` per step: e_i = a·e_{i−1} + (1 − a)·y_i, e_0 = y_0.

    a = decay^Δstep, so a history whose points each stand for several steps (a long run's
    history keeps means of 2^k steps) is smoothed over the same number of steps as a dense one.
    """
    values = np.asarray(values, dtype=float)
    if decay <= 0 or len(values) == 0:
        return values.copy()
    gaps = np.maximum(np.diff(np.asarray(steps, dtype=float), prepend=steps[0]), 1.0)
    a = decay ** gaps
    out = np.empty_like(values)
    acc = values[0]
    for i, (ai, yi) in enumerate(zip(a.tolist(), values.tolist(), strict=True)):
        acc = ai * acc + (1.0 - ai) * yi
        out[i] = acc
    return out


def envelope(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``2·bins`` points: each bin's minimum and maximum at the bin's mean x (a band for noisy data)."""
    if len(x) <= 2 * bins:
        return x, y
    edges = np.linspace(0, len(x), bins + 1).astype(int)[:-1]
    mid = np.add.reduceat(x, edges) / np.diff(np.append(edges, len(x)))
    lo, hi = np.minimum.reduceat(y, edges), np.maximum.reduceat(y, edges)
    # alternate min-max and max-min so the connecting lines fill the band rather than zig-zag across it
    first = np.where(np.arange(bins) % 2 == 0, lo, hi)
    second = np.where(np.arange(bins) % 2 == 0, hi, lo)
    return np.repeat(mid, 2), np.column_stack([first, second]).ravel()


def thin(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``n`` of the points, evenly picked, the first and the last always among them."""
    if len(x) <= n:
        return x, y
    idx = np.unique(np.linspace(0, len(x) - 1, max(n, 2)).round().astype(int))
    return x[idx], y[idx]


# -- ticks ------------------------------------------------------------------------
@dataclass(frozen=True)
class Axis:
    """Limits and ticks of one axis, in the units plotted (log10 of the value on a log axis)."""

    lo: float
    hi: float
    ticks: tuple[float, ...]
    labels: tuple[str, ...]


def ladder(lo_step: float, hi_step: float):
    """The 1-2-5 steps from about ``lo_step`` to about ``hi_step``, ascending."""
    e = math.floor(math.log10(lo_step)) - 1
    while True:
        for m in (1, 2, 5):
            s = m * 10.0 ** e
            if s > hi_step * 10:
                return
            if s >= lo_step / 10:
                yield s
        e += 1


def widen(lo: float, hi: float, relative: float) -> tuple[float, float]:
    """A range that can carry ticks: a flat (or numerically flat) range opened around its centre."""
    size = max(abs(lo), abs(hi))
    if hi - lo > max(size * 1e-9, 1e-200):
        return lo, hi
    c = (lo + hi) / 2
    d = abs(c) * relative if abs(c) > 1e-200 else 1.0
    return c - d, c + d


def tick_label(v: float, step: float) -> str:
    """``v`` with the decimals that ``step`` needs; short scientific for very large or small values."""
    if not (math.isfinite(step) and step > 0):
        step = abs(v) or 1.0
    if v == 0 or abs(v) < step * 1e-6:
        return "0"
    if 1e-3 <= abs(v) < 1e5:
        d = max(0, -math.floor(math.log10(step) + 1e-9))
        s = f"{v:.{d}f}"
        if len(s) <= 7:
            return s
    digits = max(0, math.floor(math.log10(abs(v)) + 1e-9) - math.floor(math.log10(step) + 1e-9))
    return compact_e(f"{v:.{min(digits, 3)}e}")


def compact_e(s: str) -> str:
    mantissa, _, exp = s.partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exp)}" if exp else mantissa


def power_label(t: float) -> str:
    """The value 10^t written out, for t on the 1-2-5 ladder: 0.05, 2, 100, 1e5, 2e-7 (never overflows)."""
    e = math.floor(t + 1e-9)
    m = round(10.0 ** (t - e), 6)
    return f"{m * 10.0 ** e:g}" if -3 <= e <= 4 else f"{m:g}e{e}"


def step_label(v: float, digits: int = 3) -> str:
    """A step count in a few characters: 950, 1.5k, 20k, 2M (``digits`` significant digits)."""
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if size <= abs(v) < 1e9:
            return compact_e(f"{v / size:.{digits}g}") + unit
    return compact_e(f"{v:.{digits}g}")


def aligned_ticks(lo: float, hi: float, rows: int, min_step: float = 0.0) -> tuple[float, float, float]:
    """Axis limits and a 1-2-5 tick step for data in [lo, hi] on ``rows`` rows, with every tick on a row
    and the same number of rows between neighbouring ticks; returns ``(axis_lo, axis_hi, step)``.

    plotext puts value v on row floor(0.5 + (rows−1)·(v − axis_lo)/(axis_hi − axis_lo)); with
    axis_hi − axis_lo = step·(rows−1)/r and axis_lo a multiple of step/r, tick k·step lands on a
    whole row, r rows from the next. Among those choices the one whose data fill most of the
    axis wins, preferring 3–6 rows between ticks.
    """
    span = hi - lo
    best: tuple[float, float, float, float] | None = None
    for r in range(1, max(rows - 1, 1) + 1):
        for step in ladder(max(span / max(rows - 1, 1), min_step, 1e-300), span * 2):
            if step < min_step:
                continue
            axis = step * max(rows - 1, 1) / r
            if axis < span or axis > 20 * span:
                continue
            grid = step / r
            start = math.floor((lo - (axis - span) / 2) / grid) * grid  # centre the data
            if start + axis < hi:
                start += grid
            if start > lo or start + axis < hi:
                continue
            n_ticks = math.floor((start + axis) / step + 1e-9) - math.ceil(start / step - 1e-9) + 1
            if n_ticks < 2 and rows > 2:
                continue
            score = span / axis * (1.0 if 3 <= r <= 6 else 0.9 if r in (2, 7, 8) else 0.8) \
                * (1.0 if n_ticks >= 3 else 0.7)
            if best is None or score > best[0]:
                best = (score, start, start + axis, step)
    if best is None:  # too few rows for two ticks on whole rows: the two ends
        step = nice_step(span, 1, min_step)
        return math.floor(lo / step) * step, math.ceil(hi / step) * step, step
    return best[1], best[2], best[3]


def ticks_between(lo: float, hi: float, step: float) -> list[float]:
    k0, k1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [k * step for k in range(k0, k1 + 1)][:200]


def linear_axis(lo: float, hi: float, rows: int) -> Axis:
    lo, hi = widen(lo, hi, 0.05)
    a, b, step = aligned_ticks(lo, hi, rows)
    ticks = ticks_between(a, b, step)
    return Axis(a, b, tuple(ticks), unique_labels(ticks, step))


def log_axis(lo: float, hi: float, rows: int) -> Axis:
    """An axis over log10 values [lo, hi]: decades, else 1, 2, 5 per decade, else round values at
    1-2-5 steps (a range narrower than that ladder is nearly linear anyway). Labels are the values."""
    lo, hi = widen(lo, hi, 0.0)
    if hi - lo <= 1e-9 * max(1.0, abs(lo)):
        lo, hi = lo - 0.04, hi + 0.04  # a flat series: ±10 % around it
    span = hi - lo
    # decades on evenly spaced rows
    a, b, step = aligned_ticks(lo, hi, rows, min_step=1.0)
    decades = ticks_between(a, b, step)
    if span / (b - a) >= 0.5 and len(decades) >= 2:
        return Axis(a, b, tuple(decades), tuple(power_label(t) for t in decades))
    # 1, 2, 5 per decade, the limits on the ticks just outside the data
    marks = [e + math.log10(m) for e in range(math.floor(lo) - 1, math.ceil(hi) + 1) for m in (1, 2, 5)]
    below = max((t for t in marks if t <= lo + 1e-12), default=lo)
    above = min((t for t in marks if t >= hi - 1e-12), default=hi)
    inside = [t for t in marks if below - 1e-12 <= t <= above + 1e-12]
    fit = span / max(above - below, 1e-300)
    if ((fit >= 0.5 and len(inside) >= 3) or fit >= 0.8) and 2 <= len(inside) <= max(rows, 2):
        return Axis(below, above, tuple(inside), tuple(power_label(t) for t in inside))
    # round values at 1-2-5 steps, at their log positions
    vlo, vhi = 10.0 ** lo, 10.0 ** hi
    n = max(2, rows // 3)
    step = nice_step(vhi - vlo, n)
    t0, t1 = math.floor(vlo / step + 1e-9) * step, math.ceil(vhi / step - 1e-9) * step
    if t0 <= 0 or (t1 - t0) / step > n:  # the next step up covers the range in at most n parts plus one
        step = nice_step(vhi - vlo, n - 1)
        t0, t1 = math.floor(vlo / step + 1e-9) * step, math.ceil(vhi / step - 1e-9) * step
    if t0 > 0 and math.isfinite(t1):
        values = ticks_between(t0, t1, step)
        positions = [math.log10(v) for v in values]
        return Axis(positions[0], positions[-1], tuple(positions), unique_labels(values, step))
    return Axis(lo, hi, (lo, hi), unique_labels([vlo, vhi], vhi - vlo))


def unique_labels(values: list[float], step: float) -> tuple[str, ...]:
    """Labels for ``values``, with more digits if two of them would read the same."""
    labels = [tick_label(v, step) for v in values]
    finer = step
    for _ in range(6):
        if len(set(labels)) == len(labels):
            break
        finer /= 10
        labels = [tick_label(v, finer) for v in values]
    return tuple(labels)


def nice_step(span: float, intervals: int, min_step: float = 0.0) -> float:
    """The smallest 1-2-5 step (at least ``min_step``) that cuts ``span`` into at most ``intervals`` parts."""
    raw = max(span / max(intervals, 1), min_step, 1e-300)
    base = 10.0 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw * (1 - 1e-12))


def step_axis(lo: float, hi: float, columns: int) -> Axis:
    """The x axis: the data range as it is, ticks at round step counts at least 9 columns apart."""
    if not hi - lo >= 1:
        c = (lo + hi) / 2
        d = max(1.0, abs(c) * 1e-6)
        lo, hi = c - d, c + d
    step = nice_step(hi - lo, max(1, columns // 9), min_step=1.0)
    ticks = ticks_between(lo, hi, step)
    for digits in range(3, 18):  # enough digits to tell neighbouring ticks apart
        labels = tuple(step_label(t, digits) for t in ticks)
        if len(set(labels)) == len(labels):
            break
    return Axis(lo, hi, tuple(ticks), labels)


# -- the curves of one snapshot ---------------------------------------------------
@dataclass(frozen=True)
class Curves:
    """The series as the view shows them: windowed, smoothed, in plotted units (log10 on a log scale)."""

    raw: tuple[np.ndarray, np.ndarray]
    smooth: tuple[np.ndarray, np.ndarray] | None
    val: tuple[np.ndarray, np.ndarray]
    marks: tuple[float, ...]
    xlim: tuple[float, float] | None
    val_last: float | None
    raw_last: float | None

    @classmethod
    def build(cls, history: dict, changes, view: View) -> Curves:
        empty = (np.empty(0), np.empty(0))
        rx, ry = finite_pairs(*history.get("loss", empty))
        vx, vy = finite_pairs(*history.get("val_loss", empty))
        sy = ema(rx, ry, view.decay) if view.decay > 0 and len(ry) else None
        raw_last, val_last = (float(ry[-1]) if len(ry) else None), (float(vy[-1]) if len(vy) else None)
        xs = np.concatenate([rx, vx])
        if len(xs) == 0:
            return cls(empty, None, empty, (), None, val_last, raw_last)
        now, first = float(xs.max()), float(xs.min())
        start = first if view.window is None else max(first, now - view.window)

        def shown(x, y):
            keep = x >= start
            x, y = x[keep], y[keep]
            if view.log:  # only positive values have a logarithm (and subnormal ones no precision)
                keep = y >= 1 / MAX_ABS
                x, y = x[keep], np.log10(y[keep])
            return x, y

        smooth = shown(rx, sy) if sy is not None else None
        marks = tuple(float(c.step) for c in changes if is_setting_change(c) and start <= c.step <= now) \
            if view.marks else ()
        return cls(shown(rx, ry), smooth, shown(vx, vy), marks, (start, now), val_last, raw_last)

    @property
    def empty(self) -> bool:
        return not any(len(s[0]) for s in (self.raw, self.val) + ((self.smooth,) if self.smooth else ()))


#: The changes marked on the plot: where training changed course (a setting; a divergence, and the fresh optimizer
#: state it resumed with; the end of the run), not a pause, resume, start, save, or a setting refused.
MARKED = frozenset({ChangeKind.SET, ChangeKind.DIVERGED, ChangeKind.RECOVERED, ChangeKind.CRASHED,
                    ChangeKind.FINISHED})


def is_setting_change(change) -> bool:
    """A change worth a mark on the plot (``MARKED``), after the first step."""
    return change.step > 0 and change.kind in MARKED


# -- the figure -------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """What one picture draws: the points of each line (at most about two per column) and both axes."""

    raw: tuple[np.ndarray, np.ndarray]
    smooth: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    marks: tuple[float, ...]
    xaxis: Axis
    yaxis: Axis


def frame(curves: Curves, view: View, width: int, height: int) -> Frame | None:
    """``curves`` fitted to a ``width``×``height`` plot, or None if there is nothing to draw at that size."""
    if curves.empty or width < MIN_WIDTH or height < MIN_HEIGHT or curves.xlim is None:
        return None
    rows = height - 2  # one row for the x axis line, one for its labels
    # the label column's width is known once the y labels are, and the y range once the points are
    guess_cols = max(4, width - 8)
    raw = envelope(*curves.raw, guess_cols)
    none = (np.empty(0), np.empty(0))
    smooth = thin(*curves.smooth, 2 * guess_cols) if curves.smooth is not None else none
    val = thin(*curves.val, guess_cols // 2)  # dotted: every other column at most, the EMA shows between
    ys = np.concatenate([raw[1], smooth[1], val[1]])
    yaxis = (log_axis if view.log else linear_axis)(float(ys.min()), float(ys.max()), rows)
    cols = width - 1 - max(len(s) for s in yaxis.labels) - 1
    if cols < 4:
        return None
    return Frame(raw, smooth, val, curves.marks, step_axis(*curves.xlim, cols), yaxis)


def draw(plt: Plot, f: Frame, palette: Palette) -> None:
    """Put the frame on ``plt`` (cleared first)."""
    plt.clear_figure()
    plt.xaxes(True, False)
    plt.yaxes(True, False)
    plt.xlim(f.xaxis.lo, f.xaxis.hi)
    plt.ylim(f.yaxis.lo, f.yaxis.hi)
    plt.xticks(list(f.xaxis.ticks), list(f.xaxis.labels))
    plt.yticks(list(f.yaxis.ticks), list(f.yaxis.labels))
    for x in f.marks:  # drawn first: every line goes over them
        plt.vline(x, Palette.rgb(palette.mark))
    # the raw band first, the smoothed loss thick over it, the validation points on top (no line between
    # them, so the smoothed loss shows through wherever the two are close)
    for (x, y), colour, marker, draw_points in ((f.raw, palette.raw, RAW_MARKER, plt.plot),
                                                (f.smooth, palette.ema, EMA_MARKER, plt.plot),
                                                (f.val, palette.val, VAL_MARKER, plt.scatter)):
        if len(x):
            draw_points(x.tolist(), y.tolist(), color=Palette.rgb(colour), marker=marker)


def figure(curves: Curves, view: View, palette: Palette, width: int, height: int) -> str:
    """The plot as text with ANSI colours, or "" when there is nothing to draw at this size."""
    f = frame(curves, view, width, height)
    if f is None:
        return ""
    plt = Plot()
    draw(plt, f, palette)
    plt.plotsize(width, height)
    plt._set_size(width, height)  # as PlotextPlot.render does: plotsize alone is capped at the terminal's size
    return plt.build()


def summary(curves: Curves) -> str:
    """One line for a plot too small or too empty for curves."""
    if curves.raw_last is None and curves.val_last is None:
        return "no loss yet"
    parts = [f"loss {curves.raw_last:.3f}" if curves.raw_last is not None else "",
             f"val {curves.val_last:.3f}" if curves.val_last is not None else ""]
    return " · ".join(p for p in parts if p)


# -- the widget -------------------------------------------------------------------
class LossPlot(PlotextPlot):
    """The loss curves; keys: l log/linear, w window, e smoothing, m change marks."""

    BORDER_TITLE = "loss (nats/char)"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.view = View()
        self._history: dict = {}
        self._changes: tuple = ()
        self._curves = Curves.build({}, (), self.view)
        self._palette: tuple[str, Palette] | None = None
        self._drawn: tuple = (-1, None)  # (snapshot version, view) last shown

    # -- settings
    @property
    def log_scale(self) -> bool:
        return self.view.log

    def _set_view(self, **changes) -> View:
        self.view = replace(self.view, **changes)
        self._rebuild()
        return self.view

    def toggle_log(self) -> bool:
        return self._set_view(log=not self.view.log).log

    def cycle_window(self) -> int | None:
        return self._set_view(window=cycle(WINDOWS, self.view.window)).window

    def cycle_smoothing(self) -> float:
        return self._set_view(decay=cycle(DECAYS, self.view.decay)).decay

    def toggle_marks(self) -> bool:
        return self._set_view(marks=not self.view.marks).marks

    # -- data
    def show(self, snap) -> None:
        """Take the histories of ``snap`` (if it is newer than the last shown) and redraw."""
        if (snap.version, self.view) == self._drawn:
            return
        self._drawn = (snap.version, self.view)
        self._history, self._changes = snap.history, tuple(snap.changes)
        self._rebuild()

    def _rebuild(self) -> None:
        self._curves = Curves.build(self._history, self._changes, self.view)
        self._set_titles()
        self.refresh()

    @property
    def palette(self) -> Palette:
        name = self.app.theme
        if self._palette is None or self._palette[0] != name:
            self._palette = (name, Palette.from_theme(self.app.theme_variables))
        return self._palette[1]

    def _set_titles(self) -> None:
        c, v, p = self._curves, self.view, self.palette
        # the smoothing is named, not given a figure: the status bar's "ema" is the trainer's own at
        # every step, and a second, older figure beside it would read as a contradiction
        title = f"loss · {v.window_label()} · " + (f"[{p.ema}]{v.decay_label()}[/]" if v.decay > 0
                                                   else f"[{p.raw}]raw[/]")
        if c.val_last is not None:
            title += f" · [{p.val}]val {c.val_last:.3f}[/]"
        self.border_title = title
        legend = [f"[{p.raw}]{LEGEND['raw']} raw[/]"]
        if v.decay > 0:
            legend.append(f"[{p.ema}]{LEGEND['ema']} ema[/]")
        legend.append(f"[{p.val}]{LEGEND['val']} val[/]")
        legend.append(f"[{p.mark}]{LEGEND['mark']} change[/]" if v.marks else "changes hidden")
        scale = "log" if v.log else "lin"
        room = self.size.width - 4
        for candidate in (f"{' '.join(legend)} · {scale} · l w e m", f"{' '.join(legend)} · {scale}",
                          " ".join(legend)):
            if Text.from_markup(candidate).cell_len <= room:
                break
        self.border_subtitle = candidate

    def on_mount(self) -> None:
        super().on_mount()
        # the lines, title and legend take their colours from the theme: redo them when it changes
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._rebuild())

    def on_resize(self) -> None:
        self._set_titles()

    def render(self):
        width, height = self.size
        try:
            f = frame(self._curves, self.view, width, height)
            if f is not None:
                draw(self.plt, f, self.palette)
                return super().render()  # sizes the figure to the widget, applies the theme, builds
        except Exception as e:  # the plot must never take the app down; say what failed instead
            return Text(f"plot failed: {type(e).__name__}: {e}", style="italic")
        return Text(summary(self._curves), style="dim", overflow="ellipsis", no_wrap=True)
