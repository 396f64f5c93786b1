"""Pilot tests: every key of the main screen, the way a person presses them, at 80×24."""

from __future__ import annotations

import numpy as np
import pytest

from rnntui.tui.app import next_clip
from rnntui.tui.screens.confirm import ConfirmQuit
from rnntui.tui.screens.help import HelpScreen
from rnntui.tui.screens.hyperparams import HyperparamsScreen

from .conftest import app_of, make_trainer, open_form, wait_for

SIZE = (80, 24)


def snap(app):
    return app.snapshot


async def started(pilot, app, state="paused"):
    await wait_for(pilot, lambda: snap(app) is not None and snap(app).state == state, what=f"state {state}")


async def test_pause_and_resume_change_whether_steps_advance():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        step = snap(app).step
        await pilot.pause(0.3)
        assert snap(app).step == step, "paused trainer must not step"
        await pilot.press("space")
        await wait_for(pilot, lambda: snap(app).step > step + 3, what="steps after resume")
        await pilot.press("p")
        await wait_for(pilot, lambda: snap(app).state == "paused", what="pause")
        paused_at = snap(app).step
        await pilot.pause(0.3)
        assert snap(app).step == paused_at
        await wait_for(pilot, lambda: "PAUSED" in str(app.query_one("#status").render()), what="status")


@pytest.mark.parametrize("key,factor", [("plus", 2.0), ("minus", 0.5)])
async def test_lr_keys_multiply_and_divide(key, factor):
    app = app_of(make_trainer(lr=0.004), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press(key)
        await wait_for(pilot, lambda: abs(snap(app).hyper.lr - 0.004 * factor) < 1e-12, what="lr change")
        assert app.client.trainer.optimizer.lr == pytest.approx(0.004 * factor)
        assert any("lr 0.004 →" in c.text for c in snap(app).changes)


async def test_c_cycles_clip_mode_and_brackets_move_threshold():
    app = app_of(make_trainer(clip_mode="global", clip=5.0), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        for expected in ("element", "none", "global"):
            await pilot.press("c")
            await wait_for(pilot, lambda e=expected: snap(app).hyper.clip_mode == e, what=f"clip mode {expected}")
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: snap(app).hyper.clip == 10.0, what="clip up")
        await pilot.press("left_square_bracket")
        await pilot.press("left_square_bracket")
        await wait_for(pilot, lambda: snap(app).hyper.clip == 2.0, what="clip down")


def test_clip_ladder():
    assert next_clip(5, 1) == 10 and next_clip(5, -1) == 2 and next_clip(3, 1) == 5 and next_clip(3, -1) == 2
    assert next_clip(1e-3, -1) == 1e-3


async def test_temperature_keys():
    app = app_of(make_trainer(temperature=0.8), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("T")
        await wait_for(pilot, lambda: snap(app).hyper.temperature == pytest.approx(0.9), what="temp up")
        await pilot.press("t", "t")
        await wait_for(pilot, lambda: snap(app).hyper.temperature == pytest.approx(0.7), what="temp down")


async def test_s_samples_now_and_the_panel_shows_it():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("s")
        await wait_for(pilot, lambda: len(snap(app).samples) == 1, what="a sample")
        text = snap(app).samples[-1].text
        assert len(text) == 60
        await wait_for(pilot, lambda: "sample @0" in str(app.query_one("#samples").border_title), what="panel")


async def test_ctrl_s_saves_checkpoint(tmp_path):
    from rnntui.checkpoint import load as load_checkpoint

    trainer = make_trainer(tmp_path)
    app = app_of(trainer)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None and snap(app).step >= 5, what="steps")
        await pilot.press("p")  # paused: the parameters stay those of the step saved
        await started(pilot, app)
        step = snap(app).step
        initial = make_trainer().model.params
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: snap(app).saved_step == step, what="save")
        saved = load_checkpoint(tmp_path / "run.npz")
        assert saved.step == step == trainer.step and saved.hyper == trainer.hyper
        for k, p in trainer.model.params.items():  # this step's parameters, not the initial ones
            np.testing.assert_array_equal(saved.arrays[f"param.{k}"], p)
            assert not np.array_equal(p, initial[k])


async def test_l_toggles_log_scale():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        plot = app.query_one("#loss")
        assert plot.log_scale is False
        await pilot.press("l")
        assert plot.log_scale is True
        await pilot.press("l")
        assert plot.log_scale is False


async def test_help_screen_opens_and_closes():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        first = app.screen
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")  # again: the same screen, built once
        await pilot.pause()
        assert app.screen is first and "what you are looking at" in str(first.query_one("Markdown").source)
        app.action_help()  # asked again while it is open (the command palette can): stays one screen
        await pilot.pause()
        assert app.screen is first and app.screen_stack.count(first) == 1
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_hyperparameter_form_applies_valid_values():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        form = await open_form(pilot)
        form.query_one("#f-lr").value = "0.01"
        form.query_one("#f-sample_every").value = "7"
        form.query_one("#f-optimizer").value = "rmsprop"
        await pilot.click("#apply")
        await wait_for(pilot, lambda: snap(app).hyper.lr == 0.01 and snap(app).hyper.sample_every == 7
                       and snap(app).hyper.optimizer == "rmsprop", what="form applied")
        assert not isinstance(app.screen, HyperparamsScreen)
        assert app.client.trainer.optimizer.name == "rmsprop"


@pytest.mark.parametrize("field,value,message", [
    ("lr", "abc", "must be a number"),
    ("lr", "-1", "greater than 0"),
    ("lr", "nan", "finite"),
    ("clip", "0", "greater than 0"),
    ("temperature", "-0.5", "between 0"),
    ("sample_length", "2.5", "whole number"),
    ("val_every", "-3", "between 0"),
])
async def test_hyperparameter_form_refuses_bad_values_in_place(field, value, message):
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        before = snap(app).hyper
        await pilot.press("h")
        await pilot.pause()
        form = app.screen
        form.query_one(f"#f-{field}").value = value
        await pilot.click("#apply")
        await pilot.pause(0.2)
        assert isinstance(app.screen, HyperparamsScreen), "a bad value must keep the form open"
        assert message in str(form.query_one(f"#e-{field}").render())
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert snap(app).hyper == before


async def test_typing_into_the_form_and_pressing_enter():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("h")
        await pilot.pause()
        lr = app.screen.query_one("#f-lr")
        assert app.focused is lr
        lr.value = ""
        await pilot.press(*"0.05")
        await pilot.press("enter")
        await wait_for(pilot, lambda: snap(app).hyper.lr == 0.05, what="typed lr applied")


async def test_keys_typed_ahead_of_the_quit_dialog_do_not_answer_it(tmp_path):
    """A burst that arrives with the q (a paste, or typing ahead: "question" holds an s) opens the dialog but
    neither stops nor detaches; a key pressed once the dialog is there still answers it."""
    from textual import events

    trainer = make_trainer(tmp_path)
    for _ in range(3):
        trainer.train_step()
    app = app_of(trainer, start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        for ch in "question_mark":  # all queued before the app handles the first
            app.post_message(events.Key(ch, ch))
        await pilot.pause(0.3)
        assert isinstance(app.screen, ConfirmQuit) and app.is_running and not app._stopping
        assert not (tmp_path / "run.npz").exists()
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmQuit), what="the dialog to close")
        assert app.is_running


async def test_ctrl_c_asks_as_q_does(tmp_path):
    trainer = make_trainer(tmp_path)
    app = app_of(trainer, start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("space")
        await wait_for(pilot, lambda: snap(app).step >= 3, what="steps")
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    assert trainer.saved_step == trainer.step >= 3
    assert (tmp_path / "run.npz").exists()
    assert trainer.state == "stopped" and app.outcome == "stopped"


async def test_diverging_run_ends_diverged_with_visible_message():
    app = app_of(make_trainer(lr=1000.0, optimizer="sgd", clip_mode="none"), start_paused=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None and snap(app).state == "diverged", what="divergence")
        await wait_for(pilot, lambda: "DIVERGED" in str(app.query_one("#message").render()), what="message")
        message = str(app.query_one("#message").render())
        assert "DIVERGED" in message and "step" in message
        assert "DIVERGED" in str(app.query_one("#status").render())
        trainer = app.client.trainer
        assert all(abs(p).max() < float("inf") for p in trainer.model.params.values())
        # lower lr, turn clipping on and resume: training goes on
        form_changes = {"lr": 1e-3, "clip_mode": "global"}
        from rnntui.trainer import Set
        trainer.send(Set(form_changes))
        step = snap(app).step
        await pilot.press("space")
        await wait_for(pilot, lambda: snap(app).state == "running" and snap(app).step > step + 2, what="recovery")


async def test_crash_in_trainer_is_shown_and_exit_code_is_nonzero(monkeypatch):
    trainer = make_trainer()

    def boom(*a, **k):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(trainer.model, "loss_and_grads", boom)
    app = app_of(trainer, start_paused=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None and snap(app).state == "crashed", what="crash")
        await wait_for(pilot, lambda: "injected failure" in str(app.query_one("#message").render()), what="message")
        assert "injected failure" in str(app.query_one("#message").render())
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("s")  # stop the crashed run (it keeps serving commands until then)
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    assert app.return_code == 1 and app.outcome == "stopped"


async def from_palette(pilot, command: str) -> None:
    """Open the command palette, type ``command`` and run the first match."""
    await pilot.press("ctrl+p")
    await pilot.pause(0.3)
    await pilot.press(*command)
    await pilot.pause(0.5)
    await pilot.press("enter")


async def test_command_palette_runs_our_commands():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await from_palette(pilot, "sample now")
        await wait_for(pilot, lambda: len(snap(app).samples) == 1, what="sample from the palette")


async def test_d_opens_the_derivation_screen_and_escape_returns():
    from rnntui.tui.screens.derivation import DerivationScreen

    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, DerivationScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, DerivationScreen)


async def test_the_quit_dialog_keeps_the_step_live_while_training_goes_on(tmp_path, monkeypatch):
    import re

    monkeypatch.chdir(tmp_path)
    app = app_of(make_trainer())
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None and snap(app).step >= 3, what="steps")
        await pilot.press("q")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ConfirmQuit)

        def shown_step() -> int:
            return int(re.search(r"at step (\d+)", str(dialog.query_one("#confirm-text").render())).group(1))

        opened_at = shown_step()
        await wait_for(pilot, lambda: snap(app).step > opened_at + 50, what="training to go on")
        await wait_for(pilot, lambda: shown_step() > opened_at + 50, what="the dialog to follow")
        assert shown_step() <= snap(app).step
        await pilot.press("d")
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    app.client.close()


def _screenshots(folder):
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".svg")


async def test_the_palette_screenshot_goes_to_the_working_folder_without_downloads(tmp_path, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))  # a server's home: no ~/Downloads
    monkeypatch.delenv("XDG_DOWNLOAD_DIR", raising=False)
    monkeypatch.chdir(work)
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await from_palette(pilot, "screenshot")
        await wait_for(pilot, lambda: _screenshots(work), what="a screenshot in the working folder")
        (name,) = _screenshots(work)
        await wait_for(pilot, lambda: f"screenshot saved to {name}" in str(app.query_one("#message").render()),
                       what="the message line to say where")
    assert (work / name).read_text().startswith("<svg") and list(home.iterdir()) == []


async def test_a_screenshot_goes_to_the_working_folder_or_says_why_not(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    app = app_of(make_trainer(tmp_path), start_paused=True)
    async with app.run_test(size=(160, 30)) as pilot:  # wide enough for the temporary folder's long name
        await started(pilot, app)
        app.action_screenshot()  # the action (and the palette's command) deliver the screenshot
        (name,) = _screenshots(tmp_path / "here")
        assert f"screenshot saved to {name}" in str(app.query_one("#message").render())  # (in the cwd)
        assert app.deliver_screenshot(path=str(tmp_path / "gone")) is None
        message = str(app.query_one("#message").render())
        assert f"screenshot NOT saved: No such file or directory ({tmp_path / 'gone'})" in message
