"""The trends screen (g): every recorded series offered, the chosen ones plotted, log only where it fits, live."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.text import Text
from textual.app import App
from textual_plotext.plot import Plot

from rnntui.trainer import HISTORY_NAMES
from rnntui.tui.screens.help import help_text
from rnntui.tui.screens.trends import (
    MAX_SHOWN,
    Trend,
    TrendsScreen,
    catalogue,
    choose_scale,
    describe,
    draw,
    frame,
    series_colours,
)
from rnntui.tui.widgets.loss_plot import DEFAULT_PALETTE, Palette, finite_pairs

from .conftest import app_of, make_trainer, wait_for
from .test_loss_plot import NASTY as LOSS_NASTY
from .test_loss_plot import histories

SMALL, LARGE = (80, 24), (160, 48)
README = Path(__file__).resolve().parents[2] / "README.md"


def trained(steps: int = 60):
    trainer = make_trainer()
    for _ in range(steps):
        trainer.train_step()
    trainer.publish()
    return trainer


async def open_trends(pilot, app) -> TrendsScreen:
    await wait_for(pilot, lambda: app.snapshot is not None, what="the first snapshot")
    await pilot.press("g")
    await wait_for(pilot, lambda: isinstance(app.screen, TrendsScreen), what="the trends screen")
    await pilot.pause()
    return app.screen


def highlight(screen: TrendsScreen, name: str) -> None:
    screen.options.highlighted = screen.options.get_option_index(name)


def plain(markup) -> str:
    return Text.from_markup(str(markup)).plain


# -- opening, offering, closing -------------------------------------------------------------
async def test_g_opens_the_screen_at_80x24_offering_every_recorded_series_and_escape_closes():
    app = app_of(trained(), start_paused=True)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_trends(pilot, app)
        assert set(HISTORY_NAMES) <= set(screen.offered), "a recorded series the screen does not offer"
        assert all(describe(n).known for n in HISTORY_NAMES), "a recorded series without a name of its own"
        # at 80×24 the plot has room for curves and draws them: ticks on both axes, no summary line
        plot = screen.plot
        assert plot.size.width >= 50 and plot.size.height >= 18
        picture = plot.render().plain
        assert "┤" in picture and "┬" in picture, picture
        assert [s.name for s in plot.trend.series] == ["pre:total", "post:total"]
        assert "‖g‖ pre total" in plain(plot.border_title)
        assert screen.options.region.width >= 20 and screen.query_one("#trends-keys").region.y == SMALL[1] - 1
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, TrendsScreen)
        await pilot.press("g")  # opens again, the same choice kept
        await wait_for(pilot, lambda: isinstance(app.screen, TrendsScreen), what="the screen again")
        await pilot.press("g")  # and g closes it too
        await pilot.pause()
        assert not isinstance(app.screen, TrendsScreen)


async def test_at_160x48_the_plot_takes_the_room_and_the_whole_list_shows():
    app = app_of(trained(), start_paused=True)
    async with app.run_test(size=LARGE) as pilot:
        screen = await open_trends(pilot, app)
        assert screen.plot.size.width >= 120 and screen.plot.size.height >= 40
        assert screen.options.max_scroll_y == 0, "every series in view without scrolling"
        assert "decades" in plain(screen.plot.border_title)  # room for the scale's reason


async def test_the_key_is_bound_documented_and_in_the_palette():
    app = app_of(trained(), start_paused=True)
    bound = [b for b in app.BINDINGS if "g" in b.key.split(",")]
    assert [b.action for b in bound] == ["trends"] and bound[0].description
    assert "| g |" in help_text(bindings=app.BINDINGS) and "| `g` |" in README.read_text(encoding="utf-8")
    async with app.run_test(size=SMALL) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, what="the first snapshot")
        command = next(c for c in app.get_system_commands(app.screen) if c.title.startswith("Trends"))
        assert "g" in command.help
        app.call_later(command.callback)  # (as the palette runs it: in the app)
        await wait_for(pilot, lambda: isinstance(app.screen, TrendsScreen), what="the screen from the palette")


# -- choosing what is plotted ---------------------------------------------------------------
async def test_space_and_enter_choose_what_is_plotted_up_to_three():
    trainer = trained()
    history = trainer.latest.history
    app = app_of(trainer, start_paused=True)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_trends(pilot, app)
        plot = screen.plot
        highlight(screen, "sigma_max")
        await pilot.press("space")
        assert [s.name for s in plot.trend.series] == ["pre:total", "post:total", "sigma_max"]
        assert "σmax(w)" in plain(plot.border_title)
        assert "σmax(w)" in str(screen.query_one("#trends-about").render())
        # the plotted points are the recorded ones (on this scale, in its units)
        x, y = history["sigma_max"]
        px, py = plot.trend.lines[2]
        assert np.array_equal(px, x)
        assert np.allclose(py, np.log10(y) if plot.trend.scale.log else y)
        # space again hides it
        await pilot.press("space")
        assert "σmax(w)" not in plain(plot.border_title)
        # a fourth hides the first chosen, and says so
        for name in ("lr", "loss"):
            highlight(screen, name)
            await pilot.press("enter")
        highlight(screen, "ratio:w")
        await pilot.press("space")
        assert [s.name for s in plot.trend.series] == ["post:total", "lr", "loss", "ratio:w"][-MAX_SHOWN:]
        await pilot.pause()
        assert "‖g‖ post total hidden" in str(screen.query_one("#trends-about").render())
        assert "lr" in str(screen.options.get_option("lr").prompt)
        # x hides them all, and the plot says what to do
        await pilot.press("x")
        await pilot.pause()
        assert plot.trend.series == () and "choose a series" in plot.render().plain


def test_every_recorded_series_is_listed_once_grouped_in_order():
    series = catalogue(HISTORY_NAMES)
    assert sorted(s.name for s in series) == sorted(HISTORY_NAMES)
    groups = [s.group for s in series]
    assert groups == sorted(groups, key=["loss", "‖g‖ pre clip", "‖g‖ post clip", "Δp/p", "optimizer",
                                         "recurrence", "other"].index)
    assert describe("ratio:w").title == "Δp/p w" and "hidden→hidden" in describe("ratio:w").about
    assert describe("reach_factor").title == "reach ×/step"
    unknown = describe("gate:f")
    assert not unknown.known and unknown.title == "gate:f"  # a new series is still offered, under "other"


# -- log or linear ----------------------------------------------------------------------------
@pytest.mark.parametrize(("values", "log", "why"), [
    ([[1.0, 10.0, 100.0]], True, "2 decades"),
    ([[0.002, 0.5, 3.0]], True, "3.18 decades"),
    ([[1.0, 5.0]], False, "0.699 decades"),
    ([[1.0, 10.0]], False, "1 decades"),  # exactly one decade: not more than one
    ([[0.0, 10.0, 1000.0]], False, "a value ≤ 0"),
    ([[-1.0, 10.0, 1000.0]], False, "a value ≤ 0"),
    ([[1e-320, 1.0]], False, "a value near 0"),
    ([[math.nan, 1.0, math.inf, 1000.0]], True, "3 decades"),  # what is not finite is not plotted
    ([[1.0, 2.0], [200.0, 300.0]], True, "2.48 decades"),  # two series together span the decades
    ([[], []], False, "no values"),
    ([[math.nan]], False, "no values"),
    ([], False, "no values"),
])
def test_log_axis_only_when_every_value_is_positive_and_they_span_over_a_decade(values, log, why):
    scale = choose_scale([np.array(v) for v in values])
    assert (scale.log, scale.why) == (log, why)


def test_on_a_log_axis_the_plotted_values_are_the_log10_of_the_recorded_ones():
    history = {"pre:w": (np.array([1.0, 2.0, 3.0]), np.array([0.01, 1.0, 100.0])),
               "saturation": (np.array([1.0, 2.0]), np.array([0.0, 0.25]))}
    log = Trend.build(history, [describe("pre:w")])
    assert log.scale.log and np.allclose(log.lines[0][1], [-2.0, 0.0, 2.0]) and log.last == (100.0,)
    both = Trend.build(history, [describe("pre:w"), describe("saturation")])
    assert not both.scale.log and both.scale.why == "a value ≤ 0"
    assert np.allclose(both.lines[0][1], [0.01, 1.0, 100.0])  # linear: as recorded
    f = frame(log, 60, 20)
    assert f.yaxis.labels[0] in ("0.01", "1e-2") and f.yaxis.labels[-1] == "100"  # labelled with the values


class Host(App):
    """The screen alone, over a source of snapshots the test sets."""

    def __init__(self, source):
        super().__init__()
        self.source = source

    def on_mount(self) -> None:
        self.push_screen(TrendsScreen(lambda: self.source.snap, refresh_hz=20, shown=["pre:w"]))


def fake(version: int, values, steps=None) -> SimpleNamespace:
    y = np.asarray(values, dtype=float)
    x = np.arange(1, len(y) + 1, dtype=float) if steps is None else np.asarray(steps, dtype=float)
    return SimpleNamespace(version=version, history={"pre:w": (x, y)})


async def test_the_title_says_log_or_linear_for_series_with_a_known_answer():
    source = SimpleNamespace(snap=fake(1, np.geomspace(0.01, 100, 50)))
    app = Host(source)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause(0.2)
        plot = app.screen.plot
        assert plain(plot.border_title).startswith("log (4 decades)")
        source.snap = fake(2, np.linspace(2.0, 3.0, 50))
        await wait_for(pilot, lambda: plot.trend.scale.why == "0.176 decades", what="the new snapshot")
        assert plain(plot.border_title).startswith("linear (0.176 decades)")
        source.snap = fake(3, [0.0, 1.0, 100.0])
        await wait_for(pilot, lambda: "a value ≤ 0" in plain(plot.border_title), what="a zero")


async def test_list_marks_title_and_lines_share_a_colour_that_follows_the_theme():
    source = SimpleNamespace(snap=fake(1, np.linspace(1.0, 2.0, 30)))
    app = Host(source)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause(0.2)
        screen = app.screen
        for theme in ("textual-dark", "textual-light"):
            app.theme = theme
            await pilot.pause(0.2)
            colour = series_colours(Palette.from_theme(app.theme_variables))[0]
            assert screen.plot.colours[0] == colour
            assert colour in str(screen.options.get_option("pre:w").prompt)
            assert colour in str(screen.plot.border_title) and colour in str(screen.plot.border_subtitle)


# -- live ------------------------------------------------------------------------------------
async def test_redrawn_when_a_new_snapshot_arrives_and_only_then():
    source = SimpleNamespace(snap=None)
    app = Host(source)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause(0.2)
        plot = app.screen.plot
        assert "no values of ‖g‖ pre w yet" in plot.render().plain
        source.snap = fake(1, [1.0, 2.0, 3.0])
        await wait_for(pilot, lambda: len(plot.trend.lines[0][0]) == 3, what="the first snapshot")
        drawn = plot.trend
        source.snap.history = {"pre:w": (np.arange(5.0), np.ones(5))}  # the same version: not looked at again
        await pilot.pause(0.3)
        assert plot.trend is drawn
        source.snap = fake(2, [1.0, 2.0, 3.0, 4.0])
        await wait_for(pilot, lambda: len(plot.trend.lines[0][0]) == 4, what="the next snapshot")
        assert "latest ▄ 4" in plain(plot.border_subtitle)


async def test_the_screen_follows_training():
    app = app_of(make_trainer(), start_paused=True, refresh_hz=10)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_trends(pilot, app)

        def last_step() -> float:
            x = screen.plot.trend.lines[0][0]
            return float(x[-1]) if len(x) else 0.0

        assert last_step() == 0.0 and "no values of" in screen.plot.render().plain
        await pilot.press("p")  # the app's keys work here (space chooses a series on this screen)
        await wait_for(pilot, lambda: last_step() > 0, what="a first point")
        first = last_step()
        await wait_for(pilot, lambda: last_step() > first + 20, timeout=30, what="later steps plotted")
        assert "┤" in screen.plot.render().plain


# -- nothing crashes it ----------------------------------------------------------------------------
NASTY = {**LOSS_NASTY, "tiny positive": [1e-300, 1e-250, 1e-200], "decades": list(np.geomspace(1e-8, 1e8, 40))}


async def test_nasty_series_at_any_size_render_without_error():
    source = SimpleNamespace(snap=None)
    app = Host(source)
    async with app.run_test(size=SMALL) as pilot:
        version = 0
        for size in (SMALL, (12, 5), (3, 2), LARGE, (40, 8), (1, 1), SMALL):
            await pilot.resize_terminal(*size)
            for name, values in NASTY.items():
                version += 1
                source.snap = fake(version, values)
                await pilot.pause(0.08)
                assert app.is_running, f"{name} at {size}"
                assert "plot failed" not in app.screen.plot.render().plain, f"{name} at {size}"


NAMES = ("loss", "val_loss", "pre:w", "lr")


@st.composite
def trend_histories(draw):
    """Four series from the loss plot's nasty histories, some made positive so that log axes come up too."""
    a, b = draw(histories()), draw(histories())
    out = {"loss": a["loss"], "val_loss": a["val_loss"], "pre:w": b["loss"], "lr": b["val_loss"]}
    return {k: (x, np.abs(y) if draw(st.booleans()) else y) for k, (x, y) in out.items()}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trend_histories(), st.lists(st.sampled_from(NAMES), max_size=MAX_SHOWN, unique=True),
       st.integers(0, 220), st.integers(0, 70))
def test_fuzz_any_series_any_size_draws_or_declines(history, names, width, height):
    trend = Trend.build(history, [describe(n) for n in names])
    assert trend.summary()
    if trend.scale.log:  # only when every finite value shown is > 0 and they span more than a decade
        for name in names:  # (the values shown: finite, with a step that is too, as the plot keeps them)
            _, y = finite_pairs(*history[name])
            assert (y > 0).all()
    f = frame(trend, width, height)
    if f is None:
        return
    for axis in (f.xaxis, f.yaxis):
        assert axis.lo < axis.hi and np.isfinite([axis.lo, axis.hi]).all()
        assert list(axis.ticks) == sorted(set(axis.ticks)) and len(set(axis.labels)) == len(axis.labels)
    span = f.yaxis.hi - f.yaxis.lo
    for x, y in f.lines:
        assert np.isfinite(x).all() and np.isfinite(y).all()
        assert ((y >= f.yaxis.lo - 1e-9 * span) & (y <= f.yaxis.hi + 1e-9 * span)).all()  # nothing cut off
    plt = Plot()
    draw(plt, f, series_colours(DEFAULT_PALETTE))
    plt._set_size(width, height)
    lines = Text.from_ansi(plt.build()).plain.splitlines()
    assert len(lines) == height and all(len(line) <= width for line in lines)
