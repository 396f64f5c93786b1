"""TrendsScreen (g): any recorded series over the steps — the losses, each parameter's ‖g‖ before and
after clipping and its Δp/p, the learning rate, σmax(w), the tanh saturation and the reach's factor.

The trainer records every one of them at every step (:data:`rnntui.trainer.HISTORY_NAMES`: bounded
histories that, in a long run, merge neighbouring points into their mean); the main screen shows
their latest figures, this screen their course. The list on the left offers every series the
snapshots carry, grouped; space (or enter, or a click) shows or hides one, up to :data:`MAX_SHOWN` at
once on one y axis. The axis is log10 of the values when every value shown is > 0 and together they
span more than a decade (:func:`choose_scale`), linear otherwise; the title says which and why.
The plot is drawn with the loss plot's helpers (series sanitised before plotext sees them, log10 on a
linear axis, round ticks) and follows the newest snapshot, redrawn only when a new one has arrived.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from ...monitor import SATURATION_LEVEL
from ...trainer import EMA_DECAY, HISTORY_NAMES, REACH_EVERY, Snapshot
from ..widgets.loss_plot import (
    MAX_ABS,
    MIN_HEIGHT,
    MIN_WIDTH,
    Axis,
    Palette,
    envelope,
    finite_pairs,
    linear_axis,
    log_axis,
    step_axis,
)

#: How many series one plot shows at once (one colour and glyph each).
MAX_SHOWN = 3
#: What the screen shows when it first opens: the gradient before and after the clip.
DEFAULT_SHOWN = ("pre:total", "post:total")
#: Each shown series' glyph as plotext draws it, and as the legend and the list show it.
MARKERS = ("hd", "•", "×")
GLYPHS = ("▄", "•", "×")
EMPTY = (np.empty(0), np.empty(0))


# -- what each series is ------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    """One recorded history, as the screen names it."""

    name: str   # its key in the snapshot's history
    group: str  # the heading it is listed under
    label: str  # its row under that heading
    title: str  # its name in the plot's title and legend
    about: str  # what the figure is, in a line

    @property
    def known(self) -> bool:
        return self.group != OTHER


OTHER = "other"
#: The headings, in the order the list shows them.
GROUPS = ("loss", "‖g‖ pre clip", "‖g‖ post clip", "Δp/p", "optimizer", "recurrence", OTHER)
PARAMS = {"u": "u (input→hidden)", "w": "w (hidden→hidden)", "v": "v (hidden→output)", "bh": "bh (hidden bias)",
          "by": "by (output bias)", "total": "all parameters together"}
#: kind → (heading, title prefix, what it is, with {p} for the parameter)
KINDS = {
    "pre": ("‖g‖ pre clip", "‖g‖ pre", "L2 norm of the gradient of {p} before clipping"),
    "post": ("‖g‖ post clip", "‖g‖ post", "L2 norm of the gradient of {p} after clipping: what the optimizer gets"),
    "ratio": ("Δp/p", "Δp/p", "‖Δp‖/‖p‖ of {p}: the update's size against the weights'; healthy about 1e-3"),
}
FIXED = {s.name: s for s in (
    Series("loss", "loss", "train", "loss", "training loss per character (nats) on each step's batch"),
    Series("loss_ema", "loss", "EMA", "loss EMA",
           f"the trainer's moving average of the loss, decay {EMA_DECAY:g} per step (the status bar's ema)"),
    Series("val_loss", "loss", "validation", "val loss", "loss per character on the held-out text, at each validation"),
    Series("lr", "optimizer", "lr", "lr", "the learning rate in use (+ / − halve or double it, h sets it)"),
    Series("sigma_max", "recurrence", "σmax(w)", "σmax(w)",
           "largest singular value of w (power iteration): above 1 the recurrence can grow a gradient"),
    Series("saturation", "recurrence", "saturation", "saturation",
           f"share of the hidden units with |h| > {SATURATION_LEVEL:g}, where tanh is flat and passes no gradient"),
    Series("reach_factor", "recurrence", "reach ×/step", "reach ×/step",
           "per-step factor of one loss's gradient followed back in time (geometric mean): < 1 vanishes, "
           f"> 1 grows; every {REACH_EVERY} steps"),
)}


def describe(name: str) -> Series:
    """The :class:`Series` of the history ``name`` (``kind:parameter`` for the per-parameter ones)."""
    if name in FIXED:
        return FIXED[name]
    kind, _, param = name.partition(":")
    if kind in KINDS and param:
        group, prefix, about = KINDS[kind]
        return Series(name, group, param, f"{prefix} {param}", about.format(p=PARAMS.get(param, param)))
    return Series(name, OTHER, name, name, f"the recorded history {name!r}")


def catalogue(names: Iterable[str]) -> tuple[Series, ...]:
    """Every name's :class:`Series`, grouped in the order of :data:`GROUPS`, each group in the given order."""
    series = [describe(n) for n in dict.fromkeys(names)]
    return tuple(sorted(series, key=lambda s: GROUPS.index(s.group)))


# -- the scale ------------------------------------------------------------------------
@dataclass(frozen=True)
class Scale:
    log: bool
    why: str  # for the title: "3.2 decades", "a value ≤ 0", "0.4 decade", "no values"

    def title(self) -> str:
        return f"{'log' if self.log else 'linear'} ({self.why})"


def choose_scale(values: Sequence[np.ndarray]) -> Scale:
    """Log10 when every finite value of ``values`` (all series together) is > 0 and max/min > 10."""
    ys = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values] or [np.empty(0)])
    with np.errstate(invalid="ignore"):
        ys = ys[np.isfinite(ys) & (np.abs(ys) <= MAX_ABS)]
    if len(ys) == 0:
        return Scale(False, "no values")
    lo, hi = float(ys.min()), float(ys.max())
    if lo <= 0:
        return Scale(False, "a value ≤ 0")
    if lo < 1 / MAX_ABS:  # a subnormal value: no precision left for a logarithm to show
        return Scale(False, "a value near 0")
    decades = math.log10(hi) - math.log10(lo)
    return Scale(decades > 1, f"{decades:.3g} decades")


# -- the series of one snapshot -------------------------------------------------------
@dataclass(frozen=True)
class Trend:
    """The chosen series as plotted: finite (steps, values), values in plotted units (log10 on a log scale)."""

    series: tuple[Series, ...]
    lines: tuple[tuple[np.ndarray, np.ndarray], ...]
    scale: Scale
    last: tuple[float | None, ...]  # each series' latest finite value

    @classmethod
    def build(cls, history: dict, series: Sequence[Series]) -> Trend:
        pairs = [finite_pairs(*history.get(s.name, EMPTY)) for s in series]
        scale = choose_scale([y for _, y in pairs])
        last = tuple(float(y[-1]) if len(y) else None for _, y in pairs)
        if scale.log:
            pairs = [(x, np.log10(y)) for x, y in pairs]
        return cls(tuple(series), tuple(pairs), scale, last)

    @property
    def empty(self) -> bool:
        return not any(len(x) for x, _ in self.lines)

    def summary(self) -> str:
        """One line for a plot too small or too empty for curves."""
        if not self.series:
            return "choose a series in the list (space)"
        if self.empty:
            return "no values of " + ", ".join(s.title for s in self.series) + " yet"
        return " · ".join(f"{s.title} {v:.4g}" for s, v in zip(self.series, self.last, strict=True) if v is not None)


@dataclass(frozen=True)
class Frame:
    """What one picture draws: each series' points (at most about two per column) and both axes."""

    lines: tuple[tuple[np.ndarray, np.ndarray], ...]
    xaxis: Axis
    yaxis: Axis


def frame(trend: Trend, width: int, height: int) -> Frame | None:
    """``trend`` fitted to a ``width``×``height`` plot, or None when there is nothing to draw at that size."""
    if trend.empty or width < MIN_WIDTH or height < MIN_HEIGHT:
        return None
    # noisy series (‖g‖ from step to step) as the band of each column's lowest and highest value
    bands = tuple(envelope(x, y, max(4, width - 8)) for x, y in trend.lines)
    ys = np.concatenate([y for _, y in bands])
    xs = np.concatenate([x for x, _ in trend.lines])  # the first and last steps as recorded, not a band's mean
    yaxis = (log_axis if trend.scale.log else linear_axis)(float(ys.min()), float(ys.max()), height - 2)
    label_width = max(len(s) for s in yaxis.labels)
    if width - label_width - 2 < 4:
        return None
    return Frame(bands, step_axis(float(xs.min()), float(xs.max()), width - label_width - 2), yaxis)


def draw(plt: Plot, f: Frame, colours: Sequence[str]) -> None:
    """Put the frame on ``plt`` (cleared first), series i in ``colours[i]`` with glyph ``MARKERS[i]``."""
    plt.clear_figure()
    plt.xaxes(True, False)
    plt.yaxes(True, False)
    for axis, limits, ticks in ((f.xaxis, plt.xlim, plt.xticks), (f.yaxis, plt.ylim, plt.yticks)):
        limits(axis.lo, axis.hi)
        ticks(list(axis.ticks), list(axis.labels))
    for (x, y), colour, marker in zip(f.lines, colours, MARKERS, strict=False):
        if len(x):
            plt.plot(x.tolist(), y.tolist(), color=Palette.rgb(colour), marker=marker)


def series_colours(palette: Palette) -> tuple[str, ...]:
    """The colours of the first, second and third series: the loss plot's EMA, validation and raw colours."""
    return palette.ema, palette.val, palette.raw


# -- the widgets ----------------------------------------------------------------------
class TrendsPlot(PlotextPlot):
    """The chosen series over the steps; the title names them and the scale, the subtitle their latest values."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.trend = Trend.build({}, ())
        self._palette: tuple[str, Palette] | None = None

    @property
    def colours(self) -> tuple[str, ...]:
        name = self.app.theme
        if self._palette is None or self._palette[0] != name:
            self._palette = (name, Palette.from_theme(self.app.theme_variables))
        return series_colours(self._palette[1])

    def show(self, trend: Trend) -> None:
        self.trend = trend
        self._set_titles()
        self.refresh()

    def _set_titles(self) -> None:
        """The scale and the series in the title (the scale's reason and then the glyphs left out where the
        border is too short for them), the latest values in the subtitle."""
        t, colours = self.trend, self.colours
        scale = "log" if t.scale.log else "linear"
        names = [(f"[{c}]{g} {s.title}[/]", f"[{c}]{s.title}[/]") for s, c, g in
                 zip(t.series, colours, GLYPHS, strict=False)]
        room = self.size.width - 4
        for head, which in ((t.scale.title(), 0), (scale, 0), (scale, 1)):
            title = " · ".join([head] + [n[which] for n in names])
            if Text.from_markup(title).cell_len <= room:
                break
        self.border_title = title
        values = [f"[{c}]{g} {v:.4g}[/]" for v, c, g in zip(t.last, colours, GLYPHS, strict=False) if v is not None]
        self.border_subtitle = "latest " + " · ".join(values) if values else ""

    def on_resize(self) -> None:
        self._set_titles()

    def render(self):
        width, height = self.size
        try:
            f = frame(self.trend, width, height)
            if f is not None:
                draw(self.plt, f, self.colours)
                return super().render()  # sizes the figure to the widget, applies the theme, builds
        except Exception as e:  # the plot must never take the app down; say what failed instead
            return Text(f"plot failed: {type(e).__name__}: {e}", style="italic")
        return Text(self.trend.summary(), style="dim", overflow="ellipsis", no_wrap=True)


KEYS = f"↑/↓ choose · space show/hide (up to {MAX_SHOWN}) · x hide all · esc or g closes"


class TrendsScreen(Screen):
    """Every recorded series listed, up to :data:`MAX_SHOWN` of them plotted over the steps, live from ``latest()``."""

    BINDINGS = [
        Binding("escape,g", "app.pop_screen", "back"),
        Binding("space", "toggle", "show/hide", show=False),
        Binding("x", "hide_all", "hide all", show=False),
    ]
    DEFAULT_CSS = """
    TrendsScreen { layout: vertical; }
    #trends-main { height: 1fr; }
    #trends-list { width: 24; height: 1fr; border: round $primary-darken-1; }
    TrendsScreen.-wide #trends-list { width: 32; }
    #trends-plot { width: 1fr; height: 1fr; border: round $primary-darken-1; border-title-color: $text-muted; }
    #trends-about { height: 2; padding: 0 1; color: $text-muted; }
    #trends-keys { height: 1; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, latest: Callable[[], Snapshot | None], *, refresh_hz: float = 2.0,
                 shown: Sequence[str] = DEFAULT_SHOWN):
        super().__init__()
        self.latest = latest
        self.refresh_hz = refresh_hz
        self.shown: list[str] = list(shown)[:MAX_SHOWN]
        self.series: tuple[Series, ...] = catalogue(HISTORY_NAMES)
        self._history: dict = {}
        self._version: int | None = -1  # of the snapshot shown (None: there was none yet)
        self._note = ""

    def compose(self) -> ComposeResult:
        with Horizontal(id="trends-main"):
            yield OptionList(id="trends-list")
            yield TrendsPlot(id="trends-plot")
        yield Static(id="trends-about")
        yield Static(KEYS, id="trends-keys")

    @property
    def options(self) -> OptionList:
        return self.query_one("#trends-list", OptionList)

    @property
    def plot(self) -> TrendsPlot:
        return self.query_one("#trends-plot", TrendsPlot)

    @property
    def offered(self) -> tuple[str, ...]:
        """The names of the series the list offers, in its order."""
        return tuple(o.id for o in self.options.options if o.id is not None)

    def on_mount(self) -> None:
        self.options.border_title = "series"
        self._fill_list()
        self.options.focus()
        self.poll()
        self.set_interval(1.0 / self.refresh_hz, self.poll)
        # the marks in the list, the lines, title and legend take their colours from the theme
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._changed())

    def on_screen_resume(self) -> None:
        self.poll()

    # -- the list
    def _fill_list(self) -> None:
        rows: list[Option | None] = []
        for i, s in enumerate(self.series):
            if i == 0 or s.group != self.series[i - 1].group:
                rows.append(Option(f"[b]{s.group}[/]", disabled=True))
            rows.append(Option(self._prompt(s), id=s.name))
        highlighted = self.options.highlighted
        self.options.set_options(rows)
        self.options.highlighted = highlighted if highlighted is not None else 1  # the first series

    def _prompt(self, s: Series) -> str:
        if s.name not in self.shown:
            return f"  [dim]○[/] {s.label}"
        i = self.shown.index(s.name)
        return f"  [{self.plot.colours[i]}]{GLYPHS[i]} [b]{s.label}[/][/]"

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None:
            self._show_about(describe(event.option.id))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.toggle(event.option.id)

    def action_toggle(self) -> None:
        option = self.options.highlighted_option
        if option is not None and option.id is not None:
            self.toggle(option.id)

    def action_hide_all(self) -> None:
        self.shown.clear()
        self._note = ""
        self._changed()

    def toggle(self, name: str) -> None:
        """Show ``name`` (hiding the earliest shown if :data:`MAX_SHOWN` are already), or hide it."""
        self._note = ""
        if name in self.shown:
            self.shown.remove(name)
        else:
            if len(self.shown) >= MAX_SHOWN:
                self._note = f"up to {MAX_SHOWN} at once: {describe(self.shown.pop(0)).title} hidden"
            self.shown.append(name)
        self._changed()

    def _changed(self) -> None:
        self._relabel()
        self._redraw()
        self._show_highlighted()

    def _show_highlighted(self) -> None:
        option = self.options.highlighted_option
        if option is not None and option.id is not None:
            self._show_about(describe(option.id))

    def _show_about(self, s: Series) -> None:
        x, y = finite_pairs(*self._history.get(s.name, EMPTY))
        latest = f"latest {y[-1]:.4g} at step {x[-1]:,.0f} · {len(y)} points" if len(y) else "no values yet"
        note = f"[$warning]{self._note}[/] · " if self._note else ""
        self.query_one("#trends-about", Static).update(f"{note}[b]{s.title}[/]: {s.about} · {latest}")

    # -- the data
    def poll(self) -> None:
        """Take the newest snapshot if it is new (and this screen is the one shown) and redraw."""
        if not self.is_current:
            return
        snap = self.latest()
        version = snap.version if snap is not None else None
        if version == self._version:
            return
        self._version = version
        self._history = snap.history if snap is not None else {}
        names = catalogue(list(HISTORY_NAMES) + list(self._history))
        if names != self.series:  # a series the trainer records that this screen had not listed yet
            self.series = names
            self._fill_list()
        self._redraw()
        self._show_highlighted()

    def _redraw(self) -> None:
        self.plot.show(Trend.build(self._history, [describe(n) for n in self.shown]))

    def _relabel(self) -> None:
        for s in self.series:
            self.options.replace_option_prompt(s.name, self._prompt(s))
