"""The main screen's gradient-reach panel: the status it reads on constructed weights, and its agreement
with the derivation screen on the same frozen weights (at 80×24)."""

from __future__ import annotations

import numpy as np

from rnntui.tui.screens.derivation import DerivationScreen
from rnntui.tui.widgets.timeflow import TimeFlow, lag_axis, reach_bars, reach_summary

from .conftest import app_of, make_trainer, wait_for

SIZE = (80, 24)


def _plain(widget) -> str:
    return str(widget.render())


def _constructed(w_scale: float, u_scale: float = 1e-3, steps: int = 3):
    t = make_trainer(lr=1e-12, optimizer="sgd", clip_mode="none")
    H = t.model.H
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((H, H)))
    p = t.model.params
    p["w"][...] = w_scale * q
    p["u"][...] = u_scale * np.random.default_rng(1).choice([-1.0, 1.0], p["u"].shape)
    p["bh"][...] = 0
    for _ in range(steps):
        t.train_step()
    return t


async def _panel_text(app, pilot) -> str:
    await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.reach is not None,
                   what="a snapshot with the reach")
    app.tick(force=True)
    await pilot.pause()
    return _plain(app.query_one(TimeFlow))


async def test_vanishing_weights_read_vanishing_on_the_main_screen():
    app = app_of(_constructed(0.1), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        text = await _panel_text(app, pilot)
        assert "VANISHING" in text and "OK" not in text
        assert "reach 2 of 10" in text and "×0.1/step" in text
        assert "σmax<1" in text  # the cause beside the word
        assert "d=0" in text and "d=9" in text  # the lag axis is labelled
        # every line fits the panel: nothing wraps at 80×24
        panel = app.query_one(TimeFlow)
        assert all(len(line) <= panel.content_size.width for line in text.splitlines())


async def test_healthy_weights_read_ok():
    app = app_of(_constructed(0.97), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        text = await _panel_text(app, pilot)
        assert "OK" in text and "VANISHING" not in text and "EXPLODING" not in text
        assert "reach beyond T" in text


async def test_exploding_weights_read_exploding():
    app = app_of(_constructed(1.5, u_scale=1e-9), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        text = await _panel_text(app, pilot)
        assert "EXPLODING" in text and "▲" in text


async def test_the_derivation_screen_and_the_panel_agree_on_the_same_frozen_weights():
    trainer = make_trainer()
    for _ in range(7):  # the periodic reach was measured at step 1; the inspection measures step 7
        trainer.train_step()
    app = app_of(trainer, start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await _panel_text(app, pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DerivationScreen) and app.screen.ins is not None,
                       what="the derivation screen's weights")
        screen = app.screen
        assert "frozen at step 7" in _plain(screen.query_one("#deriv-head"))
        reach = screen.ins.reach
        assert reach.step == 7
        time_text = _plain(screen.query_one("#deriv-time"))
        assert reach_summary(reach) in time_text
        # σmax is that of the frozen weights, exactly
        assert f"σmax(w) = {screen.ins.sigma_max:.3g}" in _plain(screen.query_one("#deriv-eqs"))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.snapshot.reach is reach, what="the panel to take the same reach")
        app.tick(force=True)
        await pilot.pause()
        panel = _plain(app.query_one(TimeFlow))
        assert reach_summary(reach, app.query_one(TimeFlow).content_size.width) in panel


async def test_verify_says_it_is_working_and_brings_its_results_into_view():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, what="trainer")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DerivationScreen) and app.screen.ins is not None,
                       what="weights")
        screen = app.screen
        body = screen.query_one("#deriv-body")
        assert body.scroll_y == 0
        await pilot.press("v")
        await pilot.pause()
        verify = screen.query_one("#deriv-verify")
        assert "working" in _plain(verify) or "passes" in _plain(verify)
        await wait_for(pilot, lambda: "relative error below" in _plain(verify), what="the verify results")
        await pilot.pause(0.2)
        assert body.scroll_y > 0  # moved down to the results
        top = verify.region.y
        assert 0 <= top < SIZE[1]  # the results' first line is on the screen


def test_reach_bars_on_a_fixed_axis():
    assert reach_bars(np.array([1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5, 2.0, np.nan]), 8) == "█▆▅▃▁·▲·"
    assert reach_bars(np.array([1.0, 0.01]), 6) == "███▅▅▅"  # the room is shared by the lags
    assert len(reach_bars(np.ones(50), 20)) == 20
    assert lag_axis(25, 25).startswith("d=0") and lag_axis(25, 25).endswith("d=24")


def test_help_is_computed_from_the_run_and_names_the_documented_thresholds():
    import math

    from rnntui import monitor
    from rnntui.tui.screens.help import help_text

    text = help_text(75)
    assert f"ln V ≈ {math.log(75):.2f} for these 75 characters" in text and "ln V ≈ 4.32" in text
    assert "4.2 for 65" not in text
    # the status words' rules, as the monitor applies them
    assert f"below {100 * monitor.REACH_LEVEL:.0f} % of its start" in text
    assert "shorter than half the window" in text and monitor.VANISHING_SHARE == 0.5
    assert f"to {monitor.EXPLODING_GROWTH:.0f}× its start" in text
    assert f"more than {100 * monitor.SATURATED_SHARE:.0f} % of the tanh units" in text
    for opt in ("adam, rmsprop", "adagrad", "sgd", "momentum"):
        assert f"  - {opt}:" in text


async def test_after_a_divergence_the_panels_say_which_figures_are_of_the_discarded_update():
    from rnntui.tui.widgets.gradients import GradientPanel

    trainer = make_trainer(optimizer="sgd", lr=1000, clip_mode="none")
    for _ in range(50):
        if trainer.train_step() is None:
            break
    assert trainer.state == "diverged"
    app = app_of(trainer, start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, what="snapshot")
        app.tick(force=True)
        await pilot.pause()
        title = str(app.query_one(GradientPanel).border_title)
        assert "discarded" in title
        panel = _plain(app.query_one(TimeFlow))
        kept_sigma = np.linalg.norm(np.array(trainer.model.params["w"]), 2)
        assert f"σmax(w) {kept_sigma:.3g}" in panel  # of the kept parameters
