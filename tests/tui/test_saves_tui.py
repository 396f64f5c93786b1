"""The app replaces no file that is not the run's own: ctrl+s, the quit dialog (which names the file it will
write), a signal and the save after the app failed all go to a free name beside another run's checkpoint."""

from __future__ import annotations

import signal

from rnntui import checkpoint
from rnntui.checkpoint import load as load_checkpoint
from rnntui.tui.app import RnnTuiApp, finish_app
from rnntui.tui.screens.confirm import ConfirmQuit

from .conftest import make_trainer, wait_for

SIZE = (80, 24)


def snap(app):
    return app.trainer.latest


def _other_run_at(path) -> bytes:
    other = make_trainer()
    other.train_step()
    checkpoint.save(path, other)
    return path.read_bytes()


async def _some_steps(pilot, app, n=3):
    await wait_for(pilot, lambda: snap(app) is not None and snap(app).step >= n, what=f"{n} steps")


async def test_ctrl_s_saves_beside_another_runs_checkpoint_and_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    theirs = _other_run_at(tmp_path / "tiny.rnntui.npz")
    app = RnnTuiApp(make_trainer())
    async with app.run_test(size=SIZE) as pilot:
        await _some_steps(pilot, app)
        assert app.save_path == "tiny.rnntui-2.npz"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: snap(app).saved_step is not None, what="save")
        assert snap(app).saved_path == "tiny.rnntui-2.npz"
        assert "checkpoint saved to tiny.rnntui-2.npz (tiny.rnntui.npz belongs to another run)" in snap(app).message
        first = snap(app).saved_step
        await pilot.press("ctrl+s")  # again: into its own file now, no third name
        await wait_for(pilot, lambda: snap(app).saved_step > first, what="second save")
        assert snap(app).saved_path == "tiny.rnntui-2.npz"
    assert (tmp_path / "tiny.rnntui.npz").read_bytes() == theirs
    assert not (tmp_path / "tiny.rnntui-3.npz").exists()
    assert load_checkpoint(tmp_path / "tiny.rnntui-2.npz").header["run_id"] == app.trainer.run_id


async def test_the_quit_dialog_names_the_file_it_writes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    theirs = _other_run_at(tmp_path / "tiny.rnntui.npz")
    app = RnnTuiApp(make_trainer())
    async with app.run_test(size=SIZE) as pilot:
        await _some_steps(pilot, app)
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmQuit)
        keys = str(app.screen.query_one("#confirm-keys").render())
        assert "save to tiny.rnntui-2.npz (tiny.rnntui.npz belongs to another run) and quit" in keys
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    capsys.readouterr()
    assert finish_app(app, app.trainer) == 0
    trainer = app.trainer
    assert capsys.readouterr().out == f"checkpoint: tiny.rnntui-2.npz (step {trainer.step})\n"
    assert (tmp_path / "tiny.rnntui.npz").read_bytes() == theirs
    assert load_checkpoint(tmp_path / "tiny.rnntui-2.npz").step == trainer.step


async def test_the_quit_dialog_names_the_usual_file_when_it_is_free(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = RnnTuiApp(make_trainer())
    async with app.run_test(size=SIZE) as pilot:
        await _some_steps(pilot, app)
        await pilot.press("q")
        await pilot.pause()
        keys = str(app.screen.query_one("#confirm-keys").render())
        assert "save to tiny.rnntui.npz and quit" in keys and "another run" not in keys
        await pilot.press("escape")


class _NoWatchdog:
    """After a signal the app arms a timer that ends the process (the terminal may be gone); not in a test."""

    def __init__(self, *args, **kwargs):
        self.daemon = True

    def start(self):
        pass


async def test_a_signal_saves_beside_another_runs_checkpoint(tmp_path, monkeypatch, capsys):
    import rnntui.tui.app

    monkeypatch.setattr(rnntui.tui.app.threading, "Timer", _NoWatchdog)
    monkeypatch.chdir(tmp_path)
    theirs = _other_run_at(tmp_path / "tiny.rnntui.npz")
    app = RnnTuiApp(make_trainer())
    async with app.run_test(size=SIZE) as pilot:
        await _some_steps(pilot, app)
        app.on_signal(signal.SIGTERM)  # as the event loop's handler calls it
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    capsys.readouterr()
    finish_app(app, app.trainer)
    assert capsys.readouterr().out == f"checkpoint: tiny.rnntui-2.npz (step {app.trainer.step})\n"
    assert (tmp_path / "tiny.rnntui.npz").read_bytes() == theirs


async def test_quitting_with_a_checkpoint_another_run_took_meanwhile_saves_beside_it(tmp_path, capsys):
    trainer = make_trainer(tmp_path)  # --checkpoint tmp_path/run.npz
    app = RnnTuiApp(trainer)
    async with app.run_test(size=SIZE) as pilot:
        await _some_steps(pilot, app)
        theirs = _other_run_at(tmp_path / "run.npz")
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    capsys.readouterr()
    assert finish_app(app, trainer) == 0
    assert capsys.readouterr().out == f"checkpoint: {tmp_path / 'run-2.npz'} (step {trainer.step})\n"
    assert (tmp_path / "run.npz").read_bytes() == theirs
    assert load_checkpoint(tmp_path / "run-2.npz").step == trainer.step


async def test_when_the_training_process_dies_the_exit_line_counts_what_was_lost(tmp_path, capsys):
    import os

    from rnntui.process import TrainerProcess

    trainer = make_trainer(tmp_path)
    trainer.checkpoint_every = 5
    runner = TrainerProcess(trainer)
    app = RnnTuiApp(runner)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None and snap(app).step >= 8, timeout=30, what="steps")
        await pilot.press("p")  # (a paused child publishes its exact state: nothing happens unseen before the kill)
        await wait_for(pilot, lambda: snap(app).state == "paused", what="pause")
        last = snap(app)
        os.kill(runner.pid, signal.SIGKILL)
        await wait_for(pilot, lambda: snap(app).state == "crashed", what="the crash")
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    capsys.readouterr()
    assert finish_app(app, runner) == 1
    saved = load_checkpoint(tmp_path / "run.npz").step
    assert saved == last.saved_step == last.step // 5 * 5  # the child's periodic save
    n = last.step - saved
    lost = f"; not saved: the last {n} step{'s' if n > 1 else ''} discarded" if n else ""
    assert capsys.readouterr().out == f"checkpoint: {tmp_path / 'run.npz'} (step {saved}){lost}\n"
