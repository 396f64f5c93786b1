"""LossPlot: no input crashes it, the layout survives resizes, ticks are round, colours match labels."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.text import Text
from textual.app import App, ComposeResult

from rnntui.trainer import Change
from rnntui.tui.app import RnnTuiApp
from rnntui.tui.widgets.loss_plot import (
    DECAYS,
    DEFAULT_PALETTE,
    WINDOWS,
    Curves,
    LossPlot,
    View,
    figure,
    frame,
    summary,
)

from .conftest import make_trainer, wait_for

SMALL, LARGE = (80, 24), (160, 48)


def layout_is_narrow(app) -> None:
    """What 80×24 must look like: the wide-only panels hidden, the sample panel and the plot usable."""
    screen = app.screen_stack[0]
    assert "-wide" not in screen.classes and "-tall" not in screen.classes
    assert not app.change_log.display or app.change_log.region.height == 0
    assert app.change_log.region.height == 0
    assert app.sample_panel.region.height >= 5
    assert app.loss_plot.region.height >= 8
    right = app.query_one("#right")
    assert right.region.width == 30


async def test_log_scale_survives_many_resizes_while_training():
    app = RnnTuiApp(make_trainer(), refresh_hz=20, plot_every=1)
    async with app.run_test(size=SMALL) as pilot:
        await wait_for(pilot, lambda: app.trainer.latest is not None and app.trainer.latest.step > 30, what="steps")
        await pilot.press("l")
        assert app.loss_plot.log_scale
        for _ in range(12):
            await pilot.resize_terminal(*LARGE)
            await pilot.pause(0.15)
            assert app.change_log.region.height > 0  # the wide, tall layout shows the change log
            await pilot.resize_terminal(*SMALL)
            await pilot.pause(0.15)
            layout_is_narrow(app)
        assert app.is_running and app.return_code is None


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
                plot.show(fake_snapshot(values, version, changes=[Change(20, "lr 0.1 → 0.2")]))
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
changes = st.lists(st.builds(Change, st.integers(-5, 10**7), st.sampled_from(["lr 1 → 2", "paused", "clip"])),
                   max_size=20)


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
