"""RnnTuiApp: lays out the panels, binds the keys and runs the trainer from a worker thread.

The app is a view: a timer reads the trainer's latest immutable snapshot and redraws
(numbers at 2 Hz, the loss plot at 1 Hz, only when a new snapshot arrived); keys become
commands on the trainer's control channel, applied between steps. ``run_app`` (what the
command line uses) hands the app a :class:`rnntui.process.TrainerProcess`, so the training
itself runs in a child process and the redraws never hold the trainer up; a plain
:class:`Trainer` runs in the worker thread (tests, library use).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from ..checkpoint import destination
from ..trainer import (
    CRASHED,
    DIVERGED,
    RUNNING,
    Pause,
    Resume,
    SampleNow,
    SaveCheckpoint,
    Set,
    Snapshot,
    Stop,
    stop_commands,
    unsaved,
)
from .keys import key_actions
from .leaks import tidy
from .screens.changelog import ChangeLogScreen, change_line
from .screens.confirm import ConfirmQuit
from .screens.derivation import DerivationScreen
from .screens.help import HelpScreen
from .screens.hyperparams import HyperparamsScreen
from .screens.recall import RecallScreen
from .screens.trends import TrendsScreen
from .widgets.footer import TidyFooter
from .widgets.gradients import GradientPanel
from .widgets.loss_plot import LossPlot
from .widgets.samples import SamplePanel
from .widgets.status import MessageLine, StatusBar
from .widgets.timeflow import TimeFlow

CLIP_CYCLE = ("global", "element", "none")
CLIP_STEPS = tuple(m * 10.0**e for e in range(-3, 4) for m in (1, 2, 5))
MIN_SIZE = (60, 20)


def next_clip(value: float, direction: int) -> float:
    """The next threshold on the 1-2-5 ladder above (direction 1) or below (−1) ``value``."""
    if direction > 0:
        return next((c for c in CLIP_STEPS if c > value * 1.0001), CLIP_STEPS[-1])
    return next((c for c in reversed(CLIP_STEPS) if c < value * 0.9999), CLIP_STEPS[0])


class RnnTuiApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "rnntui"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (40, "-tall")]
    #: Every key of the main screen. The tooltip says what it does: the help's key table and the command
    #: palette are made from it (``keys.py``), and a test holds the README's table to it.
    BINDINGS = [
        Binding("p,space", "toggle_pause", "pause", id="pause", tooltip="Pause / resume training"),
        Binding("plus,equals_sign", "lr(2.0)", "lr×2", group=Binding.Group("lr"), id="lr_up",
                tooltip="Learning rate ×2"),
        Binding("minus,underscore", "lr(0.5)", "lr÷2", group=Binding.Group("lr"), id="lr_down",
                tooltip="Learning rate ÷2"),
        Binding("c", "cycle_clip", "clip", id="clip_mode", tooltip="Cycle clip mode: global → element → none"),
        Binding("left_square_bracket", "clip_step(-1)", "thr", show=False, id="clip_down",
                tooltip="Lower the clip threshold (1-2-5 steps)"),
        Binding("right_square_bracket", "clip_step(1)", "thr", show=False, id="clip_up",
                tooltip="Raise the clip threshold (1-2-5 steps)"),
        Binding("t", "temperature(-0.1)", "temp", group=Binding.Group("temp"), id="temp_down",
                tooltip="Sampling temperature −0.1 (0 = most likely character)"),
        Binding("T,shift+t", "temperature(0.1)", "temp", group=Binding.Group("temp"), id="temp_up",
                tooltip="Sampling temperature +0.1"),
        Binding("s", "sample", "sample", id="sample", tooltip="Sample now"),
        Binding("h", "hyperparams", "hyper", id="hyper", tooltip="Hyperparameters: every setting, validated"),
        Binding("d", "derivation", "deriv", show=False, id="derivation",
                tooltip="Derivation: the lecture's equations on the live model"),
        Binding("k", "recall", "recall", show=False, id="recall",
                tooltip="Long-memory task (recall.txt-format corpora): copy loss and accuracy per distance k"),
        Binding("g", "trends", "trends", show=False, id="trends",
                tooltip="Trends: any recorded series over the steps, up to 3 at once"),
        Binding("ctrl+s", "save", "save", id="save", tooltip="Save a checkpoint"),
        Binding("l", "toggle_log", "log", show=False, id="log", tooltip="Loss plot log / linear"),
        Binding("w", "plot_window", "plot window", show=False, id="plot_window",
                tooltip="Loss plot window: whole run → last 10k → 1k → 200 steps"),
        Binding("e", "plot_smoothing", "plot smoothing", show=False, id="plot_smoothing",
                tooltip="Loss plot smoothing: EMA decay .98 → .995 → .999 → .9 → off"),
        Binding("m", "plot_marks", "change marks", show=False, id="plot_marks",
                tooltip="Loss plot change marks: shown / hidden"),
        Binding("L,shift+l", "changelog", "changes", show=False, id="changelog",
                tooltip="Change log: every change with its step, whole, live"),
        Binding("question_mark", "help", "help", id="help", tooltip="Help: what every figure means, and every key"),
        Binding("q", "quit", "quit", id="quit", tooltip="Quit (saves first when --checkpoint was given)"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True, id="quit_ctrl_c",
                tooltip="Quit (saves first when --checkpoint was given)"),
    ]
    #: The command palette's own key (Textual binds it): in the help's key table, not in the palette.
    PALETTE_KEY = Binding(App.COMMAND_PALETTE_BINDING, "command_palette", "palette", id="palette",
                          tooltip="Command palette: every action above by name")

    def __init__(self, trainer, *, max_steps: int | None = None, start_paused: bool = False,
                 refresh_hz: float = 2.0, plot_every: int = 2, on_step=None):
        super().__init__()
        self.trainer = trainer
        self.on_step = on_step  # called by the trainer thread after every step (e.g. --metrics)
        self.trainer_done = threading.Event()
        self.max_steps = max_steps
        self.start_paused = start_paused
        self.refresh_hz = refresh_hz
        self.plot_every = plot_every
        self._stop_event = threading.Event()
        self._seen_version = -1
        self._shown_log: tuple | None = None
        self._ticks = 0
        self._quitting = False
        self._signal: int | None = None
        self.worker: Worker | None = None

    # -- layout ------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield LossPlot(id="loss")
                yield GradientPanel(id="grads")
            with Vertical(id="right"):
                yield TimeFlow(id="time")
                yield SamplePanel(id="samples")
                yield Static(id="changelog")
        yield Static(f"terminal too small: rnntui needs at least {MIN_SIZE[0]}×{MIN_SIZE[1]}", id="too-small")
        yield MessageLine(id="message")
        yield StatusBar(id="status")
        yield TidyFooter(show_command_palette=False)  # Textual's Footer leaks its keys

    def on_mount(self) -> None:
        # keep the main screen's widgets: a dialog on top must not hide them from the timer
        self.status_bar = self.query_one(StatusBar)
        self.grad_panel = self.query_one(GradientPanel)
        self.time_panel = self.query_one(TimeFlow)
        self.sample_panel = self.query_one(SamplePanel)
        self.loss_plot = self.query_one(LossPlot)
        self.message_line = self.query_one("#message", Static)
        self.change_log = self.query_one("#changelog", Static)
        self.change_log.border_title = "changes"
        self.worker = self.run_worker(self._train, thread=True, name="trainer", exit_on_error=False)
        self._install_signal_handlers()
        self.set_interval(1.0 / self.refresh_hz, self.tick)
        self.set_interval(30.0, tidy)  # a Textual cache would keep dead widgets' lines; see leaks.py
        self._check_size()

    def _install_signal_handlers(self) -> None:
        """SIGTERM, SIGHUP (a dropped SSH session) and SIGINT stop training and save, like q with a checkpoint."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None), signal.SIGINT):
            if sig is not None:
                try:
                    loop.add_signal_handler(sig, self.on_signal, sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass

    def on_signal(self, sig: int) -> None:
        """Stop between steps and save (to --checkpoint, or the default path if progress is unsaved)."""
        if self._quitting:
            return
        self._signal = sig
        self._stop(*stop_commands(self.snapshot or self.trainer, self.default_save_path))

    def _train(self) -> str:
        try:
            return self.trainer.run(max_steps=self.max_steps, start_paused=self.start_paused, stay_alive=True,
                                    stop_event=self._stop_event, on_step=self.on_step)
        finally:
            self.trainer_done.set()

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size)  # the event's size: self.size may still be the old one here

    def _check_size(self, size=None) -> None:
        w, h = size or self.size
        # on the main screen, even when a dialog is on top, so closing the dialog shows the right thing
        self.screen_stack[0].set_class(w < MIN_SIZE[0] or h < MIN_SIZE[1], "-too-small")

    # -- the view ----------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot | None:
        return self.trainer.latest

    def tick(self, force: bool = False) -> None:
        """Redraw from the latest snapshot, if there is a new one."""
        snap = self.snapshot
        self._ticks += 1
        if snap is None or (snap.version == self._seen_version and not force):
            return
        self._seen_version = snap.version
        with self.batch_update():  # one screen update for all panels, not one per panel
            self.status_bar.show(snap)
            self.grad_panel.show(snap)
            self.time_panel.show(snap)
            self.sample_panel.show(snap)
            if force or self._ticks % self.plot_every == 0 or snap.state != RUNNING:
                self.loss_plot.show(snap)
            self._show_changes(snap)

    def _show_changes(self, snap: Snapshot) -> None:
        """The latest change on the message line (no toasts: they would cover the figures just changed);
        an alert in the error colour, marked ⚠. The change log (wide panel, L screen) lists them all."""
        changes = snap.changes
        latest = changes[-1] if changes else None
        # an alert when the message reports it (not when it is a change restored with a checkpoint, before any now)
        alert = latest is not None and latest.alert and snap.message == latest.line
        hints: tuple[str, ...] = ()
        if snap.state == DIVERGED:
            alert, hints = True, ("press h to change settings, space to resume, ctrl+s to save",
                                  "h settings · space resume")
        elif snap.state == CRASHED:
            alive = self.worker is not None and self.worker.state == WorkerState.RUNNING
            alert, hints = True, (("training stopped; ctrl+s to save, q to quit", "ctrl+s save · q quit") if alive
                                  else ("training stopped; q to quit", "q quit"))
        shown = (snap.message, hints, alert, len(changes), latest)
        if shown == self._shown_log:  # nothing new: skip the markup parsing and relayout
            return
        self._shown_log = shown
        self.message_line.show(snap.message, hints, alert=alert)  # fixed height: no relayout
        self.change_log.update("\n".join(change_line(c) for c in reversed(changes[-30:])), layout=False)

    def get_system_commands(self, screen) -> Iterable[SystemCommand]:
        """Textual's own commands (theme, screenshot …) but those that run one of our keys' actions (its Quit
        is q's), then every key's action by name: the binding's tooltip, its keys as the help shows them."""
        actions = key_actions(self.BINDINGS)
        ours = {getattr(self, f"action_{a.action}", None) for a in actions}
        yield from (c for c in super().get_system_commands(screen) if c.callback not in ours)
        for a in actions:
            where = f" → {self.save_path}" if a.action == "save" else ""  # (a free name beside the default)
            yield SystemCommand(a.description, a.key_text + where, partial(self.run_action, a.action))

    # -- commands ----------------------------------------------------------------
    def send(self, command) -> None:
        self.trainer.send(command)

    def action_toggle_pause(self) -> None:
        snap = self.snapshot
        if snap is not None and snap.state == RUNNING:
            self.send(Pause())
        else:
            self.send(Resume())

    def action_lr(self, factor: float) -> None:
        snap = self.snapshot
        if snap is not None:
            self.send(Set({"lr": snap.hyper.lr * factor}))

    def action_cycle_clip(self) -> None:
        snap = self.snapshot
        if snap is not None:
            mode = CLIP_CYCLE[(CLIP_CYCLE.index(snap.hyper.clip_mode) + 1) % len(CLIP_CYCLE)]
            self.send(Set({"clip_mode": mode}))

    def action_clip_step(self, direction: int) -> None:
        snap = self.snapshot
        if snap is not None:
            self.send(Set({"clip": next_clip(snap.hyper.clip, direction)}))

    def action_temperature(self, delta: float) -> None:
        snap = self.snapshot
        if snap is not None:
            self.send(Set({"temperature": round(min(max(snap.hyper.temperature + delta, 0.0), 3.0), 2)}))

    def action_sample(self) -> None:
        self.send(SampleNow())

    def action_toggle_log(self) -> None:
        self.loss_plot.toggle_log()
        if self.snapshot is not None:
            self.loss_plot.show(self.snapshot)

    def action_plot_window(self) -> None:
        self.loss_plot.cycle_window()  # the plot redraws from the snapshot it has; its title says the window

    def action_plot_smoothing(self) -> None:
        self.loss_plot.cycle_smoothing()

    def action_plot_marks(self) -> None:
        self.loss_plot.toggle_marks()

    def action_recall(self) -> None:
        if self.trainer.recall is None:
            self.message_line.update("k: the copy-loss screen needs a corpus in recall.txt's format (a:..=a lines)",
                                     layout=False)
            return
        self.push_screen(RecallScreen(lambda: self.snapshot))

    def action_changelog(self) -> None:
        if not isinstance(self.screen, ChangeLogScreen):
            self.push_screen(ChangeLogScreen(lambda: self.snapshot))

    def action_trends(self) -> None:
        if not self.is_screen_installed("trends"):  # one instance: the series chosen stay chosen
            self.install_screen(TrendsScreen(lambda: self.snapshot, refresh_hz=self.refresh_hz), name="trends")
        if self.get_screen("trends") not in self.screen_stack:
            self.push_screen("trends")

    def action_derivation(self) -> None:
        self.push_screen(DerivationScreen(self.trainer))

    def action_help(self) -> None:
        if not self.is_screen_installed("help"):
            # one instance, shown again and again: its Markdown is parsed and its widgets built once
            self.install_screen(HelpScreen(self.trainer.corpus.vocab.size, (*self.BINDINGS, self.PALETTE_KEY)),
                                name="help")
        if self.get_screen("help") not in self.screen_stack:  # (the palette can ask while it is open)
            self.push_screen("help")

    def action_hyperparams(self) -> None:
        snap = self.snapshot
        hyper = snap.hyper if snap is not None else self.trainer.hyper

        def apply(changes: dict | None) -> None:
            if changes:
                self.send(Set(changes))

        self.push_screen(HyperparamsScreen(hyper), apply)

    @property
    def default_save_path(self) -> str:
        """Where ctrl+s saves: --checkpoint, else a file named after the corpus in the working folder."""
        if self.trainer.checkpoint_path:
            return self.trainer.checkpoint_path
        stem = Path(self.trainer.corpus.path).stem or "rnntui"
        return f"{stem}.rnntui.npz"

    @property
    def save_path(self) -> str:
        """Where ctrl+s writes now: the default path, or a free name beside it when that file is another run's."""
        return self.save_destination()[0]

    def save_destination(self) -> tuple[str, str]:
        """``(where a save writes now, why not to the default path: "" when it does)``, as the trainer decides
        it when it saves (``checkpoint.destination``)."""
        return destination(self.default_save_path, self.trainer.run_id, self.trainer.claimed)

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """The palette's Screenshot (also ``action_screenshot``): an SVG in the run's folder (the checkpoint's,
        else the working folder) rather than Textual's ~/Downloads, which a server seldom has; the message line
        says where it went, or why it did not."""
        folder = path or os.path.dirname(self.default_save_path) or "."
        try:
            saved = self.save_screenshot(filename, folder, time_format)
        except OSError as e:
            self.message_line.update(f"[$error b]screenshot NOT saved: {escape(e.strerror or str(e))} "
                                     f"({escape(os.path.abspath(folder))})[/]", layout=False)
            return None
        here = os.path.relpath(saved)  # short enough for the message line when it is in the working folder
        shown = os.path.abspath(saved) if here.startswith("..") else here
        self.message_line.update(f"screenshot saved to {escape(shown)}", layout=False)
        return saved

    def action_save(self) -> None:
        self.send(SaveCheckpoint(self.default_save_path))  # (or a free name beside it: Trainer.save says which)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and isinstance(self.screen, ConfirmQuit) and not self.screen.answers(event):
            return  # typed before the dialog was there: not an answer to it
        await super().on_event(event)

    def action_quit(self) -> None:
        if self._quitting:
            return
        snap = self.snapshot
        if self.trainer.checkpoint_path:
            self._stop(Stop(save=True))
            return
        if snap is None or not unsaved(snap):
            self._stop(Stop())
            return
        if isinstance(self.screen, ConfirmQuit):
            return

        where, why = self.save_destination()

        def chosen(choice: str | None) -> None:
            if choice == "save":
                self._stop(SaveCheckpoint(self.default_save_path), Stop())  # (the trainer picks the same free name)
            elif choice == "quit":
                self._stop(Stop())

        self.push_screen(ConfirmQuit(lambda: self.snapshot, where, why, refresh_hz=self.refresh_hz), chosen)

    def _stop(self, *commands) -> None:
        """Send ``commands`` (ending with a ``Stop``) and quit when the trainer has stopped."""
        self._quitting = True
        saves = any(isinstance(c, SaveCheckpoint) or (isinstance(c, Stop) and c.save) for c in commands)
        self.message_line.update("stopping…" + (" saving checkpoint" if saves else ""))
        for command in commands:
            self.send(command)
        if self.worker is None or self.worker.state not in (WorkerState.PENDING, WorkerState.RUNNING):
            self.exit(self._exit_code(), return_code=self._exit_code())

    def _exit_code(self) -> int:
        snap = self.trainer.latest
        return 1 if (self.worker and self.worker.state == WorkerState.ERROR) or (snap and snap.error) else 0

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.worker:
            return
        if event.state == WorkerState.ERROR:
            self.notify(f"the trainer stopped with an error: {event.worker.error}", severity="error", timeout=30)
            self.exit(1, return_code=1, message=f"rnntui: the trainer stopped with an error: {event.worker.error}")
        elif event.state == WorkerState.SUCCESS:
            code = self._exit_code()
            snap = self.snapshot
            if not self._quitting and snap is not None and snap.state == CRASHED:
                # the training process died: stay open so the message can be read; q quits
                self.tick(force=True)
                return
            if self._signal is not None:
                # After a hang-up the terminal is gone and writing to it can block shutdown for good;
                # the work is saved, so make sure the process ends.
                watchdog = threading.Timer(3.0, os._exit, args=(code,))
                watchdog.daemon = True
                watchdog.start()
            self.exit(code, return_code=code)

    def on_unmount(self) -> None:
        self._stop_event.set()

    @property
    def failed(self) -> bool:
        """Whether the app has ended without deciding to: every way out of ours exits with a result (``exit``),
        while an error in the app itself makes Textual end it with none."""
        return not self.is_running and self.return_value is None


def make_app(trainer, *, separate_process: bool = True, **kwargs) -> RnnTuiApp:
    """The app as the command line runs it: ``trainer`` in a child process (see :mod:`rnntui.process`)
    publishing as often as the screen redraws, and saving there if this process dies."""
    from ..process import TrainerProcess

    # snapshots as often as the screen can show them (2 Hz), not more: less to pickle and to allocate
    trainer.publish_interval = max(trainer.publish_interval, 0.25)
    runner = TrainerProcess(trainer) if separate_process else trainer
    app = RnnTuiApp(runner, **kwargs)
    if separate_process:
        runner.rescue_path = app.default_save_path  # where the child saves if this process dies
    return app


def run_app(trainer, *, max_steps: int | None = None, mouse: bool = True, metrics_path: str | None = None,
            log_every: int = 100, separate_process: bool = True) -> int:
    """Run the app on a terminal; returns the process exit code (non-zero when the trainer crashed).

    With ``separate_process`` (the default) the trainer runs in a child process, so redrawing
    the screen never holds up training (see :mod:`rnntui.process`); otherwise in a thread.
    """
    from ..headless import MetricsLog

    metrics = MetricsLog(metrics_path, log_every) if metrics_path else None
    app = make_app(trainer, separate_process=separate_process, max_steps=max_steps, on_step=metrics)
    runner = app.trainer
    try:
        app.run(mouse=mouse)
    finally:
        code = finish_app(app, runner)
        if metrics:
            metrics.close()
    return code


def finish_app(app: RnnTuiApp, trainer) -> int:
    """After the app has ended, however it ended: make sure the trainer stopped, nothing unsaved is
    lost, and say so; returns the exit code. Output errors (the terminal is gone) are ignored."""
    from ..headless import failure_note, save_at_end, save_note

    app._stop_event.set()
    if app.worker is not None:
        app.trainer_done.wait(60)
    code = app.return_code or 0
    out: list[str] = []
    err: list[str] = []
    snap = trainer.latest
    if snap is not None and snap.error:
        err += [snap.error, f"rnntui: the trainer crashed: {snap.message}"]
        code = 1
    # the save on quit failed, or the app failed before it could ask: try once more, then elsewhere
    saved, failure = save_at_end(trainer, app.default_save_path if app.failed else None)
    if failure:
        code = 1
        err.append(f"rnntui: error: {failure_note(saved, failure)}")
    if not failure:  # where the run is saved, or that it is not, whichever way it ended
        out.append(save_note(trainer))
    for lines, stream in ((out, sys.stdout), (err, sys.stderr)):
        for line in lines:
            try:
                print(line, file=stream, flush=True)
            except (OSError, ValueError):
                pass
    return code


__all__ = ["RnnTuiApp", "make_app", "run_app"]
