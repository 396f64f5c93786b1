"""The app driving a trainer in a child process, as ``rnntui CORPUS`` runs it (rnntui.process)."""

from __future__ import annotations

import os
import signal

from rnntui.checkpoint import load as load_checkpoint
from rnntui.process import TrainerProcess
from rnntui.tui.app import RnnTuiApp, finish_app, make_app
from rnntui.tui.screens.derivation import DerivationScreen

from .conftest import make_trainer, wait_for

SIZE = (80, 24)


def snap(app):
    return app.trainer.latest


async def test_keys_reach_the_child_and_quitting_brings_its_state_back(tmp_path):
    trainer = make_trainer(tmp_path)
    app = make_app(trainer, start_paused=True)  # as the command line builds it
    runner = app.trainer
    assert isinstance(runner, TrainerProcess) and runner.trainer is trainer
    assert runner.rescue_path == app.save_path and trainer.publish_interval == 0.25
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None and snap(app).state == "paused", timeout=30,
                       what="the child to start")
        assert runner.pid != os.getpid()
        await pilot.press("space")
        await wait_for(pilot, lambda: snap(app).step >= 5, what="steps in the child")
        lr = snap(app).hyper.lr
        await pilot.press("plus")
        await wait_for(pilot, lambda: snap(app).hyper.lr == 2 * lr, what="lr×2")
        await pilot.press("p")
        await wait_for(pilot, lambda: snap(app).state == "paused", what="pause")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: snap(app).saved_step == snap(app).step, what="save")
        await wait_for(pilot, lambda: "PAUSED" in str(app.query_one("#status").render()), what="status bar")
        await pilot.press("space")
        await wait_for(pilot, lambda: snap(app).step > snap(app).saved_step + 3, what="more steps")
        await pilot.press("q")  # with --checkpoint: save and quit
        await wait_for(pilot, lambda: not app.is_running, timeout=30, what="exit")
    assert finish_app(app, runner) == 0
    assert trainer.state == "stopped" and trainer.hyper.lr == 2 * lr
    assert trainer.saved_step == trainer.step == snap(app).step
    assert load_checkpoint(tmp_path / "run.npz").step == trainer.step
    assert runner.exitcode == 0


async def test_the_derivation_screen_verifies_through_the_pipe():
    runner = TrainerProcess(make_trainer())
    app = RnnTuiApp(runner, start_paused=True)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None, timeout=30, what="the child to start")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DerivationScreen) and app.screen.ins is not None,
                       what="the inspection from the child")
        await pilot.press("v")
        screen = app.screen

        def verify_text() -> str:
            return str(screen.query_one("#deriv-verify").render())

        await wait_for(pilot, lambda: "every equation passes" in verify_text() or "FAIL" in verify_text(),
                       timeout=30, what="verify")
        assert "every equation passes" in verify_text()
        await pilot.press("escape")
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, timeout=30, what="exit")


async def test_a_killed_trainer_process_is_shown_and_the_exit_code_says_so(tmp_path, capsys):
    trainer = make_trainer(tmp_path)
    runner = TrainerProcess(trainer)
    app = RnnTuiApp(runner)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None and snap(app).step >= 3, timeout=30, what="steps")
        os.kill(runner.pid, signal.SIGKILL)
        await wait_for(pilot, lambda: snap(app).state == "crashed", what="the crash")
        await wait_for(pilot, lambda: "ended unexpectedly" in str(app.query_one("#message").render()),
                       what="the message")
        await wait_for(pilot, lambda: str(app.query_one("#message").render()).endswith("q to quit")
                       and "ctrl+s" not in str(app.query_one("#message").render()), what="no offer to save")
        assert "killed by SIGKILL" in str(app.query_one("#message").render())
        assert "CRASHED" in str(app.query_one("#status").render())
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    assert finish_app(app, runner) == 1
    assert "killed by SIGKILL" in capsys.readouterr().err
    assert not (tmp_path / "run.npz").exists()  # nothing stale was saved in its place
