"""Leaving the app: q asks detach (the run goes on) or stop (it saves and ends); a signal detaches; a run that
ends while watched keeps its final screen. Saves replace no file that is not the run's own: ctrl+s and the
stop go to a free name beside another run's checkpoint."""

from __future__ import annotations

import signal

from rnntui import checkpoint
from rnntui.checkpoint import load as load_checkpoint
from rnntui.tui.screens.confirm import ConfirmQuit

from .conftest import app_of, make_trainer, wait_for

SIZE = (80, 24)


def snap(app):
    return app.snapshot


def _other_run_at(path) -> bytes:
    other = make_trainer()
    other.train_step()
    checkpoint.save(path, other)
    return path.read_bytes()


async def _some_steps(pilot, app, n=3):
    await wait_for(pilot, lambda: snap(app) is not None and snap(app).step >= n, what=f"{n} steps")


async def test_ctrl_s_saves_beside_another_runs_checkpoint_and_says_so(tmp_path):
    theirs = _other_run_at(tmp_path / "run.npz")
    app = app_of(make_trainer(tmp_path))  # its checkpoint is tmp_path/run.npz, which another run has taken
    async with app.run_test(size=SIZE) as pilot:
        await _some_steps(pilot, app)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: snap(app).saved_step is not None, what="save")
        assert snap(app).saved_path == str(tmp_path / "run-2.npz") == app.save_path
        assert (f"checkpoint saved to {tmp_path / 'run-2.npz'} ({tmp_path / 'run.npz'} belongs to another run)"
                in snap(app).message)
        first = snap(app).saved_step
        await pilot.press("ctrl+s")  # again: into its own file now, no third name
        await wait_for(pilot, lambda: snap(app).saved_step > first, what="second save")
        assert snap(app).saved_path == str(tmp_path / "run-2.npz")
        await pilot.press("q", "s")
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    assert (tmp_path / "run.npz").read_bytes() == theirs
    assert not (tmp_path / "run-3.npz").exists()
    assert load_checkpoint(tmp_path / "run-2.npz").header["run_id"] == app.client.trainer.run_id


async def test_q_then_s_stops_the_run_which_saves_and_says_where(tmp_path):
    app = app_of(make_trainer(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await _some_steps(pilot, app)
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmQuit)
        text = str(app.screen.query_one("#confirm-text").render())
        keys = str(app.screen.query_one("#confirm-keys").render())
        assert text.startswith("Run in-process is at step ") and "not saved yet" in text
        assert "d detach: the run goes on training in the background; rnntui watch in-process" in keys
        assert f"s stop the run: it saves to {tmp_path / 'run.npz'} and ends" in keys
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    trainer = app.client.trainer
    assert app.outcome == "stopped" and app.return_code == 0 and trainer.state == "stopped"
    assert app.client.end_reason == (f"the run has stopped at step {trainer.step}; checkpoint: "
                                     f"{tmp_path / 'run.npz'} (step {trainer.step})")
    assert load_checkpoint(tmp_path / "run.npz").step == trainer.step


async def test_q_then_d_detaches_and_the_run_goes_on(tmp_path):
    app = app_of(make_trainer(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await _some_steps(pilot, app)
        await pilot.press("q", "d")
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    client = app.client
    assert app.outcome == "detached" and app.return_code == 0
    at_exit = client.latest().step
    from ..conftest import wait_until

    wait_until(lambda: client.latest().step > at_exit + 5, what="the run training on without the app")
    assert not client.ended
    client.close()  # (an in-process run ends with its client; a real one goes on in its own process)
    assert load_checkpoint(tmp_path / "run.npz").step == client.trainer.step


async def test_escape_cancels(tmp_path):
    app = app_of(make_trainer(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await _some_steps(pilot, app)
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmQuit), what="the dialog to close")
        assert app.is_running and not app.client.ended
        await pilot.press("q", "d")


class _NoWatchdog:
    """After a signal the app arms a timer that ends the process (the terminal may be gone); not in a test."""

    def __init__(self, *args, **kwargs):
        self.daemon = True

    def start(self):
        pass


async def test_a_hangup_or_sigterm_detaches(tmp_path, monkeypatch):
    import rnntui.tui.app

    monkeypatch.setattr(rnntui.tui.app.threading, "Timer", _NoWatchdog)
    for sig in (signal.SIGHUP, signal.SIGTERM):
        app = app_of(make_trainer(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            await _some_steps(pilot, app)
            app.on_signal(sig)  # as the event loop's handler calls it
            await wait_for(pilot, lambda a=app: not a.is_running, what="exit")
        assert app.outcome == "detached" and not app.client.ended
        app.client.close()


async def test_a_run_that_ends_while_watched_keeps_its_final_screen(tmp_path):
    trainer = make_trainer(tmp_path)
    app = app_of(trainer, max_steps=12, stay_alive=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.client.ended, what="the run's end")
        await pilot.pause(1.0)
        assert app.is_running  # still open, saying so
        message = str(app.query_one("#message").render())  # (fitted to the 80 columns)
        assert message.startswith("the run has finished at step 12; checkpoint: ") and "q to close" in message
        assert app.client.end_reason == f"the run has finished at step 12; checkpoint: {tmp_path / 'run.npz'} (step 12)"
        assert "step 12" in str(app.query_one("#status").render())  # the final figures stay shown
        await pilot.press("q")  # nothing to ask any more
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    assert app.outcome == "ended" and app.return_code == 0
    assert load_checkpoint(tmp_path / "run.npz").step == 12


async def test_a_failed_save_at_the_stop_is_reported_and_rescued(tmp_path, monkeypatch):
    import os

    trainer = make_trainer(tmp_path)
    rescue = tmp_path / "rescue"
    rescue.mkdir()

    def disk_full_in_the_checkpoint_folder(tmp):
        if os.path.dirname(tmp) == str(tmp_path):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "_before_replace", disk_full_in_the_checkpoint_folder)
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(rescue))
    app = app_of(trainer)
    async with app.run_test(size=SIZE) as pilot:
        await _some_steps(pilot, app)
        await pilot.press("q", "s")
        await wait_for(pilot, lambda: not app.is_running, what="exit")
    reason = app.client.end_reason
    assert "No space left on device" in reason and f"saved to {rescue}" in reason
    (saved,) = rescue.iterdir()
    assert load_checkpoint(saved).step == trainer.step
    assert not (tmp_path / "run.npz").exists()


def test_the_help_says_what_q_offers():
    from rnntui.tui.screens.help import help_text

    text = help_text()
    assert "*detach* (`d`: the app closes,\nthe run goes on training; `rnntui watch NAME`" in text
    assert "*stop* (`s`: the run saves its checkpoint and ends). A dropped terminal (SSH gone, SIGHUP) detaches" in text
