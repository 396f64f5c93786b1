"""LossPlot: no input crashes it, the layout survives resizes, ticks are round, colours match labels."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.color import Color

from rnntui.monitor import History
from rnntui.trainer import Change, ChangeKind
from rnntui.tui.screens.help import HELP
from rnntui.tui.widgets.loss_plot import (
    DECAYS,
    DEFAULT_PALETTE,
    LEGEND,
    WINDOWS,
    Curves,
    LossPlot,
    Palette,
    View,
    ema,
    figure,
    frame,
    summary,
)

from .conftest import app_of, make_trainer, wait_for

SMALL, LARGE = (80, 24), (160, 48)


def layout(app) -> dict:
    """Where every panel of the main screen is, and which size classes the screen has."""
    screen = app.screen_stack[0]
    regions = {w.id or type(w).__name__: (w.region, w.display) for w in screen.query("#main, #main *, #message")}
    return {"classes": {c for c in screen.classes if c.startswith("-")}, **regions}


async def test_log_scale_survives_many_resizes_while_training():
    app = app_of(make_trainer(), refresh_hz=20, plot_every=1)
    async with app.run_test(size=SMALL) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.step > 30, what="steps")
        await pilot.pause(0.2)
        small, large = layout(app), None
        assert "-narrow" in small["classes"] and app.sample_panel.region.height >= 5
        await pilot.press("l")
        assert app.loss_plot.log_scale
        for _ in range(12):
            await pilot.resize_terminal(*LARGE)
            await pilot.pause(0.15)
            assert "-wide" in layout(app)["classes"] and "-tall" in layout(app)["classes"]
            large = large or layout(app)
            assert layout(app) == large  # the same wide layout every time
            await pilot.resize_terminal(*SMALL)
            await pilot.pause(0.15)
            assert layout(app) == small, "the 80×24 layout must come back as it was"
        assert app.is_running and app.return_code is None
        assert not str(app.loss_plot.render()).startswith("plot failed")


NAN, INF = float("nan"), float("inf")
NASTY = {
    "empty": [],
    "one point": [2.5],
    "flat": [1.7] * 50,
    "zeros": [0.0] * 10,
    "negative": [-3.0, -2.0, -1.0, 0.5, 2.0],
    "nan and inf": [NAN, 3.0, INF, -INF, 2.0, NAN],
    "all nan": [NAN] * 8,
    "huge and tiny": [1e308, 1e-308, 5e-324, 2.0, -1e308],
    "spike": [4.2] + [1.5] * 300 + [1e6] + [1.4] * 300,
}


class PlotOnly(App):
    def compose(self) -> ComposeResult:
        yield LossPlot()


def fake_snapshot(values, version=1, val=None, changes=()) -> SimpleNamespace:
    """What LossPlot reads of a Snapshot: the version, the step, the histories and the change log."""
    y = np.asarray(values, float)
    x = np.arange(1, len(y) + 1, dtype=float) * 10
    vy = np.asarray(val if val is not None else y[::7], float)
    hist = {"loss": (x, y), "loss_ema": (x, y), "val_loss": (x[::7][: len(vy)], vy[: len(x[::7])])}
    last = float(y[-1]) if len(y) else None
    return SimpleNamespace(version=version, step=int(x[-1]) if len(x) else 0, history=hist, changes=tuple(changes),
                           loss=last, loss_ema=last, val_loss=last, val_step=None)


@pytest.mark.parametrize("log", [False, True], ids=["linear", "log"])
async def test_nasty_series_at_any_size_render_without_error(log):
    app = PlotOnly()
    async with app.run_test(size=(80, 24)) as pilot:
        plot = app.query_one(LossPlot)
        if log:
            plot.toggle_log()
        version = 0
        for size in ((80, 24), (12, 5), (3, 2), (160, 48), (40, 8), (1, 1), (80, 24)):
            await pilot.resize_terminal(*size)
            for name, values in NASTY.items():
                version += 1
                plot.show(fake_snapshot(values, version, changes=[Change(20, ChangeKind.SET, "lr 0.1 → 0.2")]))
                for _ in range(3):  # a resize renders again without new data
                    plot.refresh()
                    await pilot.pause()
                assert app.is_running, f"{name} at {size}"


weird = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-308, 1e308, -1e308, NAN, INF, -INF, 1.0, 2.5]),
    st.floats(0.5, 5.0),
)
steps = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**7).map(float))


@st.composite
def histories(draw):
    n = draw(st.integers(0, 120))
    ys = draw(st.lists(weird, min_size=n, max_size=n))
    if draw(st.booleans()):
        xs = [float(i * draw(st.sampled_from([1, 7, 1000]))) for i in range(n)]
    else:
        xs = draw(st.lists(steps, min_size=n, max_size=n))
    m = draw(st.integers(0, 30))
    val = (draw(st.lists(steps, min_size=m, max_size=m)), draw(st.lists(weird, min_size=m, max_size=m)))
    return {"loss": (np.array(xs), np.array(ys)), "val_loss": (np.array(val[0]), np.array(val[1]))}


views = st.builds(View, log=st.booleans(), window=st.sampled_from(WINDOWS), decay=st.sampled_from(DECAYS),
                  marks=st.booleans())
changes = st.lists(st.builds(Change, st.integers(-5, 10**7), st.sampled_from(list(ChangeKind)),
                             st.sampled_from(["lr 1 → 2", "paused", "clip"])), max_size=20)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), views, changes, st.integers(0, 220), st.integers(0, 70))
def test_fuzz_any_series_any_size_draws_or_declines(history, view, marks, width, height):
    curves = Curves.build(history, marks, view)
    text = figure(curves, view, DEFAULT_PALETTE, width, height)
    assert summary(curves)
    if not text:
        return
    lines = Text.from_ansi(text).plain.splitlines()
    assert len(lines) == height and all(len(line) <= width for line in lines)
    f = frame(curves, view, width, height)
    for axis in (f.xaxis, f.yaxis):
        assert axis.lo < axis.hi and np.isfinite([axis.lo, axis.hi]).all()
        assert list(axis.ticks) == sorted(set(axis.ticks)) and len(set(axis.labels)) == len(axis.labels)
        assert all(axis.lo - 1e-9 * abs(axis.hi - axis.lo) <= t <= axis.hi + 1e-9 * abs(axis.hi - axis.lo)
                   for t in axis.ticks)
    for x, y in (f.raw, f.smooth, f.val):
        assert np.isfinite(x).all() and np.isfinite(y).all()
        span = f.yaxis.hi - f.yaxis.lo
        assert ((y >= f.yaxis.lo - 1e-9 * span) & (y <= f.yaxis.hi + 1e-9 * span)).all()  # nothing cut off
    twice = figure(curves, view, DEFAULT_PALETTE, width, height)
    assert twice == text  # a second render of the same data is the same picture


# -- item: round, evenly spaced y ticks -----------------------------------------------
def y_ticks(lines: list[str]) -> list[tuple[int, float]]:
    """(row, value) of every labelled y tick in a rendered plot."""
    out = []
    for row, line in enumerate(lines):
        i = line.find("┤")
        if i > 0 and line[:i].strip():
            out.append((row, float(line[:i].strip())))
    return out


def is_125(step: float) -> bool:
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    return any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 5, 10))


def falling(lo: float, hi: float, n: int = 400) -> list[float]:
    """A loss-like series from ``hi`` down to ``lo``: fast at first, then slowly."""
    t = np.linspace(0, 1, n)
    return list(lo + (hi - lo) * (np.exp(-6 * t) - np.exp(-6) * t))


PLOT_SIZES = [(48, 10), (68, 16), (98, 32)]  # the plot inside its border at 80×24, 100×30, 160×48 (about)
LINEAR_RANGES = [(1.46, 3.37), (0.0012, 0.0047), (1200.0, 4800.0), (-2.5, 7.5), (4.17, 4.19), (1.7, 1.7)]
LOG_RANGES = [(1.4, 4.2), (0.01, 300.0), (1.45, 1.65), (0.002, 0.009), (1.7, 1.7)]


async def rendered_ticks(values_per_case, log: bool) -> list[tuple[tuple, list[tuple[int, float]]]]:
    app = PlotOnly()
    out = []
    async with app.run_test(size=PLOT_SIZES[0]) as pilot:
        plot = app.query_one(LossPlot)
        if log:
            plot.toggle_log()
        version = 0
        for size in PLOT_SIZES:
            await pilot.resize_terminal(*size)
            for case, values in values_per_case:
                version += 1
                plot.show(fake_snapshot(values, version))
                await pilot.pause()
                out.append(((case, size), y_ticks(plot.render().plain.splitlines())))
    return out


async def test_linear_ticks_are_round_and_evenly_spaced():
    cases = [((lo, hi), falling(lo, hi) if lo < hi else [lo] * 50) for lo, hi in LINEAR_RANGES]
    for (case, size), ticks in await rendered_ticks(cases, log=False):
        assert len(ticks) >= 2, (case, size, ticks)
        rows = [r for r, _ in ticks]
        values = [v for _, v in ticks]
        gaps = np.diff(values)
        assert np.allclose(gaps, gaps[0], rtol=1e-6), f"uneven labels {values} for {case} at {size}"
        assert is_125(abs(gaps[0])), f"step {gaps[0]} is not 1-2-5 for {case} at {size}"
        assert len(set(np.diff(rows))) == 1, f"uneven rows {rows} for {case} at {size}"
        assert all(math.isclose(v / abs(gaps[0]), round(v / abs(gaps[0])), abs_tol=1e-6) for v in values)


async def test_log_ticks_are_decades_or_125_per_decade_or_round_steps():
    cases = [((lo, hi), falling(lo, hi) if lo < hi else [lo] * 50) for lo, hi in LOG_RANGES]
    ladder = [m * 10.0 ** e for e in range(-6, 6) for m in (1, 2, 5)]
    for (case, size), ticks in await rendered_ticks(cases, log=True):
        assert len(ticks) >= 2, (case, size, ticks)
        values = sorted(v for _, v in ticks)
        ratios = np.diff(np.log10(values))
        decades = np.allclose(ratios, ratios[0]) and math.isclose(ratios[0], round(ratios[0])) and ratios[0] >= 1
        on_ladder = [min(range(len(ladder)), key=lambda i, v=v: abs(math.log(ladder[i] / v))) for v in values]
        per_decade = all(math.isclose(ladder[i], v, rel_tol=1e-6) for i, v in zip(on_ladder, values, strict=True)) \
            and np.all(np.diff(on_ladder) == 1)
        gaps = np.diff(values)
        round_steps = np.allclose(gaps, gaps[0], rtol=1e-6) and is_125(gaps[0])
        assert decades or per_decade or round_steps, f"log ticks {values} for {case} at {size}"
        if decades:
            rows = [r for r, _ in ticks]
            assert len(set(np.diff(rows))) == 1, f"uneven decade rows {rows}"


# -- item: colours agree with the labels; every line visible --------------------------------
COLOUR_WORDS = ("grey", "gray", "cyan", "orange", "magenta", "pink", "red", "blue", "green", "yellow", "purple")


def names_a_colour(text: str) -> bool:
    return any(re.search(rf"\b{w}\b", text.lower()) for w in COLOUR_WORDS)


def cells(text: Text) -> list[tuple[str, tuple[int, int, int] | None]]:
    """(character, RGB foreground) of every non-blank cell of a rendered plot."""
    colours: list = [None] * len(text.plain)
    for span in text.spans:
        style = span.style if isinstance(span.style, Style) else Style.parse(span.style)
        if style.color is not None and style.color.triplet is not None:
            colours[span.start:span.end] = [tuple(style.color.triplet)] * (span.end - span.start)
    return [(ch, c) for ch, c in zip(text.plain, colours, strict=True) if not ch.isspace()]


def markup_colours(markup: str, app) -> dict[str, tuple[int, int, int]]:
    """The colour each word of a border title is given: ``[#abcdef]ema .98[/]`` → {"ema .98": rgb}."""
    out = {}
    for colour, word in re.findall(r"\[([^\]/][^\]]*)\]([^\[]+)\[/[^\]]*\]", markup):
        colour = app.theme_variables.get(colour[1:], colour) if colour.startswith("$") else colour
        out[word.strip()] = Color.parse(colour.split()[-1]).rgb
    return out


def loss_history(n: int = 3000, seed: int = 0, val_gap: float = 0.05) -> dict:
    """A run's histories: a loss falling from 4.2 towards 1.5 with noise, validation ``val_gap`` above it."""
    rng = np.random.default_rng(seed)
    h = {"loss": History(), "val_loss": History()}
    for step in range(1, n + 1):
        clean = 1.5 + 2.7 * np.exp(-step / 300)
        h["loss"].append(step, clean + rng.normal(0, 0.1))
        if step % 50 == 0:
            h["val_loss"].append(step, clean + val_gap)
    return {k: v.arrays() for k, v in h.items()}


def snapshot_of(history: dict, version: int = 1, changes=()) -> SimpleNamespace:
    x, y = history["loss"]
    return SimpleNamespace(version=version, step=int(x[-1]), history=history, changes=tuple(changes),
                           loss=float(y[-1]), loss_ema=float(y[-1]), val_loss=None, val_step=None)


SETTING_CHANGES = [Change(s, ChangeKind.SET, f"lr {s}") for s in (400, 900, 1500, 2200)]


async def test_title_and_legend_colours_are_the_colours_of_the_lines_and_all_lines_show():
    app = PlotOnly()
    async with app.run_test(size=PLOT_SIZES[0]) as pilot:
        plot = app.query_one(LossPlot)
        plot.show(snapshot_of(loss_history(val_gap=0.05), changes=SETTING_CHANGES))
        await pilot.pause()
        drawn = cells(plot.render())
        by_colour: dict = {}
        for ch, colour in drawn:
            by_colour.setdefault(colour, []).append(ch)
        title = markup_colours(str(plot.border_title), app)
        legend = markup_colours(str(plot.border_subtitle), app)
        ema_word = next(w for w in title if w.startswith("ema"))
        val_word = next(w for w in title if w.startswith("val"))
        width = PLOT_SIZES[0][0]
        # the validation loss sits just above the EMA, the case where one line used to hide the other
        assert len(by_colour.get(title[ema_word], [])) >= width // 2, "the EMA line must stay visible"
        assert len(by_colour.get(title[val_word], [])) >= 5, "the validation points must be visible"
        for entry, colour in legend.items():
            glyph, _, name = entry.partition(" ")
            assert colour in by_colour, f"legend '{entry}' in a colour no line has"
            if name in ("raw", "val", "change"):
                assert glyph in by_colour[colour], f"legend '{entry}': its glyph is not drawn in its colour"
        assert legend["▄ ema"] == title[ema_word] and legend["× val"] == title[val_word]
        words = (Text.from_markup(str(plot.border_title)).plain + Text.from_markup(str(plot.border_subtitle)).plain)
        assert not names_a_colour(words), words


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light", "solarized-light", "nord"])
async def test_lines_stand_out_and_marks_are_faint_in_every_theme(theme):
    app = PlotOnly()
    async with app.run_test(size=PLOT_SIZES[0]) as pilot:
        plot = app.query_one(LossPlot)
        plot.show(snapshot_of(loss_history(), changes=SETTING_CHANGES))
        app.theme = theme
        await pilot.pause()
        legend = markup_colours(str(plot.border_subtitle), app)
        assert legend["▄ ema"] == Palette.rgb(plot.palette.ema)  # the legend followed the theme
        surface = Color.parse(app.theme_variables["surface"])
        contrast = {k: abs(Color(*legend[k]).brightness - surface.brightness) for k in legend}
        assert contrast["▄ ema"] >= 0.4 and contrast["× val"] >= 0.4, contrast
        assert 0.1 < contrast["│ change"] < contrast["· raw"] < min(contrast["▄ ema"], contrast["× val"]), contrast
        drawn = {colour for _, colour in cells(plot.render())}
        assert set(legend.values()) <= drawn


def test_help_and_legend_tell_the_lines_apart_by_glyph_without_colour():
    loss_help = HELP.split("**Gradients**")[0].lower()
    assert not names_a_colour(loss_help), "the help names colours NO_COLOR does not show"
    assert all(LEGEND[k] in HELP for k in ("raw", "ema", "val", "mark"))
    f = figure(Curves.build(loss_history(), SETTING_CHANGES, View()), View(), DEFAULT_PALETTE, 60, 14)
    glyphs = {colour: set() for colour in map(Palette.rgb, (DEFAULT_PALETTE.raw, DEFAULT_PALETTE.ema,
                                                            DEFAULT_PALETTE.val, DEFAULT_PALETTE.mark))}
    for ch, colour in cells(Text.from_ansi(f)):
        if colour in glyphs:
            glyphs[colour].add(ch)
    raw, smooth, val, mark = glyphs.values()
    assert raw == {"·"} and val == {"×"} and mark <= {"│", "┴"} and smooth and not smooth & (raw | val | mark)


# -- item: window and smoothing ------------------------------------------------------------------
def test_ema_is_the_trainers_when_every_step_is_recorded(trainer):
    for _ in range(120):
        trainer.train_step()
    snap = trainer.snapshot()
    curves = Curves.build(snap.history, (), View(decay=0.98))
    np.testing.assert_allclose(curves.smooth[1], snap.history["loss_ema"][1], rtol=1e-12)
    assert curves.smooth[1][-1] == pytest.approx(snap.loss_ema, rel=1e-12)


def test_ema_on_a_coarse_history_decays_per_step():
    steps = np.arange(4.0, 404.0, 4.0)  # a long run's history: a point every 4 steps
    values = np.where(steps <= 200, 0.0, 1.0)
    out = ema(steps, values, 0.9)
    k = np.arange(1, (steps > 200).sum() + 1)
    np.testing.assert_allclose(out[steps > 200], 1 - 0.9 ** (4 * k), rtol=1e-12)
    np.testing.assert_array_equal(ema(steps, values, 0.0), values)


def test_whole_run_keeps_the_early_values_and_a_window_fits_its_own_range():
    history = loss_history(30_000)
    raw_max = history["loss"][1].max()
    whole = frame(Curves.build(history, (), View()), View(), 48, 10)
    assert whole.yaxis.hi >= raw_max and whole.raw[1].max() == raw_max  # the first steps are not averaged away
    view = View(window=1000)
    curves = Curves.build(history, (), view)
    last = frame(curves, view, 48, 10)
    assert curves.xlim == (29_000, 30_000) and last.xaxis.lo == 29_000 and (curves.raw[0] >= 29_000).all()
    shown = curves.raw[1]
    assert last.yaxis.lo <= shown.min() and last.yaxis.hi >= shown.max() and last.yaxis.hi < 2.5


async def test_whole_run_y_axis_reaches_the_first_losses():
    app = PlotOnly()
    async with app.run_test(size=PLOT_SIZES[0]) as pilot:
        plot = app.query_one(LossPlot)
        plot.show(snapshot_of(loss_history(30_000)))
        await pilot.pause()
        assert max(v for _, v in y_ticks(plot.render().plain.splitlines())) >= 4.0


async def test_keys_cycle_window_smoothing_and_marks_shown_in_the_title():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SMALL) as pilot:
        for _ in range(60):
            app.client.trainer.train_step()
        app.client.trainer.set_hyper(lr=0.01)  # a change to mark
        for _ in range(10):
            app.client.trainer.train_step()
        app.client.trainer.publish()
        await wait_for(pilot, lambda: app.loss_plot._drawn[0] == app.snapshot.version, what="plot")
        plot = app.loss_plot

        def title() -> str:
            return Text.from_markup(str(plot.border_title)).plain

        assert "all steps" in title() and "ema .98" in title()
        for expected in ("last 10k", "last 1k", "last 200", "all steps"):
            await pilot.press("w")
            assert expected in title()
        for expected in ("ema .995", "ema .999", "ema .9 ", "raw", "ema .98"):
            await pilot.press("e")
            assert expected in title() + " "
        await pilot.press("e", "e", "e", "e")  # smoothing off: no EMA line
        assert plot._curves.smooth is None and "ema" not in Text.from_markup(str(plot.border_subtitle)).plain
        await pilot.press("e")
        mark = Palette.rgb(plot.palette.mark)
        assert plot._curves.marks and any(c == mark for _, c in cells(plot.render()))
        await pilot.press("m")
        assert not plot._curves.marks and "changes hidden" in str(plot.border_subtitle)
        assert not any(c == mark for _, c in cells(plot.render()))
        await pilot.press("m")
        assert plot._curves.marks
        names = {c.title.split(":")[0] for c in app.get_system_commands(app.screen)}
        assert {"Loss plot window", "Loss plot smoothing", "Loss plot change marks"} <= names
