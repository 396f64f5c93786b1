"""Reliability in the app: divergence and recovery, a crash in the trainer thread, every form field
refusing bad values in place, resizing from 40×10 to 250×70, --metrics, and nothing lost on exit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rnntui.checkpoint import load as load_checkpoint
from rnntui.runs.metrics import MetricsLog
from rnntui.tui.app import MIN_SIZE
from rnntui.tui.screens.hyperparams import HyperparamsScreen

from .conftest import app_of, make_trainer, wait_for

SIZE = (80, 24)


def snap(app):
    return app.snapshot


def text(app, selector) -> str:
    return str(app.query_one(selector).render())


async def test_divergence_names_tensor_and_step_then_the_user_lowers_lr_and_resumes():
    app = app_of(make_trainer(lr=1000.0, optimizer="sgd", clip_mode="none"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None and snap(app).state == "diverged", what="divergence")
        await wait_for(pilot, lambda: "DIVERGED" in text(app, "#message"), what="message shown")
        message = text(app, "#message")
        assert "DIVERGED at step" in message
        assert "largest gradient in" in message or "non-finite" in message  # the offending tensor
        assert "kept the parameters of step" in message and "space to resume" in message
        assert all(np.isfinite(p).all() for p in app.client.trainer.model.params.values())
        step = snap(app).step
        # the way a user does it: h, type a lower lr, pick global clipping, apply, space
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, HyperparamsScreen), what="form")
        app.screen.query_one("#f-lr").value = ""
        await pilot.press(*"0.01")
        app.screen.query_one("#f-clip_mode").value = "global"
        await pilot.press("enter")
        await wait_for(pilot, lambda: snap(app).hyper.lr == 0.01 and snap(app).hyper.clip_mode == "global",
                       what="settings applied")
        await pilot.press("space")
        await wait_for(pilot, lambda: snap(app).state == "running" and snap(app).step > step + 5, what="recovery")
        assert math.isfinite(snap(app).loss)
        assert "after divergence the optimizer state starts fresh" in " ".join(c.text for c in snap(app).changes)


async def test_crash_is_shown_training_stops_and_the_user_can_save(tmp_path, monkeypatch):
    trainer = make_trainer(tmp_path)
    real = trainer.model.loss_and_grads

    def fails_at_step_4(*a):
        if trainer.step == 3:
            raise RuntimeError("injected failure in step 4")
        return real(*a)

    monkeypatch.setattr(trainer.model, "loss_and_grads", fails_at_step_4)
    app = app_of(trainer)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None and snap(app).state == "crashed", what="crash")
        await wait_for(pilot, lambda: "CRASHED" in text(app, "#message"), what="message shown")
        message = text(app, "#message")
        assert "CRASHED: RuntimeError: injected failure in step 4" in message and "ctrl+s to save" in message
        assert "CRASHED" in text(app, "#status")
        await pilot.pause(0.3)
        assert snap(app).step == 3 and snap(app).state == "crashed"  # training stopped
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: snap(app).saved_step == 3, what="save after the crash")
        assert load_checkpoint(tmp_path / "run.npz").step == 3
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("s")  # stop the crashed run
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    assert app.return_code == 1


BAD_VALUES = {
    "lr": [("", "must be a number"), ("abc", "must be a number"), ("0", "greater than 0"), ("-1", "greater than 0"),
           ("nan", "finite"), ("inf", "finite"), ("-inf", "finite"), ("1e9", "at most 1000")],
    "clip": [("", "must be a number"), ("x", "must be a number"), ("0", "greater than 0"), ("-2", "greater than 0"),
             ("nan", "finite"), ("inf", "finite")],
    "temperature": [("", "must be a number"), ("-0.1", "between 0"), ("nan", "finite"), ("inf", "finite"),
                    ("101", "between 0")],
    "sample_length": [("", "whole number"), ("0", "between 1"), ("2.5", "whole number"), ("10001", "between 1"),
                      ("nan", "whole number"), ("ten", "whole number")],
    "sample_every": [("", "whole number"), ("-1", "between 0"), ("1.5", "whole number"), ("inf", "whole number"),
                     ("99999999999", "between 0")],
    "val_every": [("", "whole number"), ("-3", "between 0"), ("nan", "whole number"), ("x", "whole number")],
}


async def test_every_form_field_refuses_bad_values_in_place():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None, what="trainer")
        before = snap(app).hyper
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, HyperparamsScreen), what="form")
        form = app.screen
        for field, cases in BAD_VALUES.items():
            inp = form.query_one(f"#f-{field}")
            good = inp.value
            error = form.query_one(f"#e-{field}")
            for value, message in cases:
                inp.value = value  # as typed: the message appears next to the field
                await wait_for(pilot, lambda m=message, e=error: m in str(e.render()), what=f"{field}={value!r}")
                error.update("")
                form.action_apply()  # and on apply: the form stays open, nothing is sent
                await pilot.pause(0.02)
                assert app.screen is form, (field, value)
                assert message in str(error.render()), (field, value)
            inp.value = good
            await wait_for(pilot, lambda e=error: str(e.render()).strip() == "", what=f"{field} accepted")
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert snap(app).hyper == before


RESIZES = [(60, 20), (250, 70), (59, 20), (60, 19), (1, 1), (120, 40), (80, 24)]


async def resize(pilot, w: int, h: int) -> None:
    """pilot.resize_terminal without its wait for an idle CPU (never idle while the trainer runs)."""
    from textual.drivers.headless_driver import HeadlessDriver
    from textual.events import Resize
    from textual.geometry import Size

    if isinstance(pilot.app._driver, HeadlessDriver):
        pilot.app._driver._size = Size(w, h)
    pilot.app.post_message(Resize(Size(w, h), Size(w, h)))
    await pilot.pause(0.1)


async def test_resizing_from_tiny_to_huge_never_crashes_and_says_how_large_it_must_be():
    from rnntui.trainer import Pause

    trainer = make_trainer(sample_every=5, sample_length=40)
    app = app_of(trainer)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None and snap(app).step > 10, what="steps")
        main = app.screen
        for i, (w, h) in enumerate(RESIZES):
            if i == 3:
                app.send(Pause())  # the first sizes while training runs, the rest paused (faster)
            await resize(pilot, w, h)
            app.tick(force=True)
            await pilot.pause(0.1)
            small = w < MIN_SIZE[0] or h < MIN_SIZE[1]
            assert main.has_class("-too-small") == small, (w, h)
            too_small = app.query_one("#too-small")
            assert too_small.display == small and app.query_one("#main").display == (not small), (w, h)
            if small:
                assert f"at least {MIN_SIZE[0]}×{MIN_SIZE[1]}" in str(too_small.render())
        # with a dialog open while the size changes, then closed
        for open_dialog, screen_type in ((app.action_hyperparams, HyperparamsScreen),):
            open_dialog()
            await wait_for(pilot, lambda t=screen_type: isinstance(app.screen, t), what=screen_type.__name__)
            for w, h in ((250, 70), (30, 8)):
                await resize(pilot, w, h)
            app.screen.dismiss(None)
            await pilot.pause(0.1)
            assert app.screen is main and main.has_class("-too-small")  # it knows the size changed meanwhile
            await resize(pilot, *SIZE)
            assert not main.has_class("-too-small")
        assert app.is_running and snap(app).error is None and snap(app).step > 10


async def test_metrics_are_written_from_the_app(tmp_path):
    path = tmp_path / "m.jsonl"
    metrics = MetricsLog(str(path), every=5)
    app = app_of(make_trainer(), on_step=metrics)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None and snap(app).step >= 21, what="steps")
        await pilot.press("p")
        await wait_for(pilot, lambda: snap(app).state == "paused", what="pause")
    metrics.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in records][:4] == [5, 10, 15, 20]
    assert all(math.isfinite(r["loss"]) for r in records)


async def test_an_error_in_the_app_itself_leaves_the_run_training(tmp_path, monkeypatch):
    """The app is a view: when it fails, the run goes on (and, in process, saves when its client lets go)."""
    trainer = make_trainer(tmp_path)
    app = app_of(trainer)
    from rnntui.tui.widgets.status import StatusBar

    real_show = StatusBar.show

    def breaks_after_some_steps(self, s):
        if s.step > 5:
            raise RuntimeError("injected failure in a widget")
        return real_show(self, s)

    monkeypatch.setattr(StatusBar, "show", breaks_after_some_steps)
    with pytest.raises(RuntimeError, match="injected failure in a widget"):
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: not app.is_running, timeout=20, what="the app to fail")
    assert app.failed and not app.client.ended
    step = trainer.step
    from ..conftest import wait_until

    wait_until(lambda: trainer.step > step + 3, what="training to go on")
    app.client.close()
    assert trainer.state == "stopped"
    assert load_checkpoint(tmp_path / "run.npz").step == trainer.step > 5


async def test_opening_and_closing_dialogs_does_not_leak_widgets():
    """Textual's Footer kept every FooterKey it ever made (data_bind watchers); the soak showed RSS
    creeping up by ~0.5 MB per dialog opened. TidyFooter prunes them."""
    import gc

    from textual.widgets import Footer
    from textual.widgets._footer import FooterKey

    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None, what="trainer")
        footer = app.query_one(Footer)

        async def keys_alive_after(n):
            for i in range(n):  # what every dialog opened or closed, every focus change does
                if i == 0:
                    app.action_help()
                    await pilot.pause(0.05)
                    app.screen.dismiss(None)
                    await pilot.pause(0.05)
                else:
                    footer.call_later(footer.recompose)  # from the footer's own message loop, as Textual does
                    await pilot.pause(0.02)
            await pilot.pause(0.1)
            gc.collect()
            return sum(isinstance(o, FooterKey) for o in gc.get_objects())

        first = await keys_alive_after(3)
        later = await keys_alive_after(12)
        attached = len(footer.query(FooterKey))
        assert later <= first + attached, (first, later, attached)  # bounded, not growing with every recompose
        assert len(getattr(footer, "__watchers", {}).get("compact", [])) <= 2 * attached


async def test_render_caches_of_closed_dialogs_are_released():
    """Textual's StylesCache.get_inner_outer lru_cache keys on the StylesCache instance, so it kept up to
    1024 dead widgets' render caches; the app empties it every 30 s."""
    import gc
    import weakref

    from rnntui.tui.leaks import release_render_caches

    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None, what="trainer")
        dead = []
        for _ in range(2):
            app.action_hyperparams()  # a dialog built anew each time (the help screen is kept)
            await pilot.pause(0.1)
            dialog = app.screen
            dead += [weakref.ref(w._styles_cache) for w in [dialog, *dialog.query("*")]]
            dialog.dismiss(None)
            await pilot.pause(0.1)
        del dialog
        gc.collect()
        held = sum(r() is not None for r in dead)
        assert held > len(dead) // 2  # the Textual behaviour this works around; if fixed, drop the workaround
        release_render_caches()
        gc.collect()
        # all gone, but for at most one that another part of Textual may still refer to (seen in the full suite)
        assert sum(r() is not None for r in dead) <= 1, (held, len(dead))
        from rnntui.tui.leaks import tidy

        assert any(getattr(t, "_callback", None) is tidy for t in app._timers)  # every 30 s
        tidy()  # (and the heap trim runs without error wherever it runs)
