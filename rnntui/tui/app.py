"""RnnTuiApp: lays out the panels, binds the keys and shows one run through its :class:`RunClient`.

The app is a view of a run that lives elsewhere: a timer reads the run's latest immutable snapshot
(``client.latest()``) and redraws (numbers at 2 Hz, the loss plot at 1 Hz, only when a new snapshot
arrived); keys become commands (``client.send``), applied by the run between steps. The command line
gives it a :class:`~rnntui.runs.client.SocketRunClient` of a run in its own process; tests and library
users an :class:`~rnntui.runs.client.InProcessClient`. Nothing here reaches the trainer itself.

Leaving: ``q`` asks whether to detach (the run goes on training; ``rnntui watch`` shows it again) or to
stop it (it saves and ends). A hang-up (a dropped SSH session) and SIGTERM detach. When the run ends
while watched, the app says so and keeps the final screen; ``q`` then closes it. ``outcome`` says which.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterable
from functools import partial

from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.widgets import Static

from ..runs.client import RunClient
from ..trainer import CRASHED, DIVERGED, RUNNING, Pause, Resume, SampleNow, SaveCheckpoint, Set, Snapshot, Stop
from .keys import key_actions
from .leaks import tidy
from .screens.changelog import ChangeLogScreen, change_line
from .screens.confirm import ConfirmQuit
from .screens.hyperparams import HyperparamsScreen
from .widgets.footer import TidyFooter
from .widgets.gates import GatePanel
from .widgets.gradients import GradientPanel
from .widgets.layers import next_layer
from .widgets.loss_plot import LossPlot
from .widgets.samples import SamplePanel
from .widgets.status import MessageLine, StatusBar
from .widgets.timeflow import TimeFlow

CLIP_CYCLE = ("global", "element", "none")
CLIP_STEPS = tuple(m * 10.0**e for e in range(-3, 4) for m in (1, 2, 5))
MIN_SIZE = (60, 20)
QUIT_TIP = "Quit: detach (the run goes on training) or stop the run (it saves and ends)"


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
                tooltip="Derivation: the cell's BPTT equations on the live model"),
        Binding("n", "next_layer", "layer", show=False, id="layer",
                tooltip="Next layer (--layers N): the reach, gate and gradient panels show layer 1 → 2 → … in turn"),
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
        Binding("q", "quit", "quit", id="quit", tooltip=QUIT_TIP),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True, id="quit_ctrl_c", tooltip=QUIT_TIP),
    ]
    #: The command palette's own key (Textual binds it): in the help's key table, not in the palette.
    PALETTE_KEY = Binding(App.COMMAND_PALETTE_BINDING, "command_palette", "palette", id="palette",
                          tooltip="Command palette: every action above by name")

    def __init__(self, client: RunClient, *, refresh_hz: float = 2.0, plot_every: int = 2):
        super().__init__()
        self.client = client
        self.refresh_hz = refresh_hz
        self.plot_every = plot_every
        self._seen_version = -1
        self._shown_log: tuple | None = None
        self._ticks = 0
        self._stopping = False  # "stop" was chosen: the app closes when the run has ended
        self._end_shown = False
        #: How the app ended: "detached" (the run goes on), "stopped" (the user stopped the run), "ended" (the
        #: run ended, or its connection was lost, while watched); None while it runs.
        self.outcome: str | None = None

    # -- layout ------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield LossPlot(id="loss")
                yield GradientPanel(id="grads")
            with Vertical(id="right"):
                yield TimeFlow(id="time")
                yield GatePanel(id="gates")
                yield SamplePanel(id="samples")
                yield Static(id="changelog")
        yield Static(f"terminal too small: rnntui needs at least {MIN_SIZE[0]}×{MIN_SIZE[1]}", id="too-small")
        yield MessageLine(id="message")
        yield StatusBar(id="status")
        yield TidyFooter(show_command_palette=False)  # Textual's Footer leaks its keys

    def on_mount(self) -> None:
        # keep the main screen's widgets: a dialog on top must not hide them from the timer
        self.status_bar = self.query_one(StatusBar)
        self.status_bar.run = self.client.info.name
        self.grad_panel = self.query_one(GradientPanel)
        self.time_panel = self.query_one(TimeFlow)
        self.gate_panel = self.query_one(GatePanel)
        self.sample_panel = self.query_one(SamplePanel)
        self.loss_plot = self.query_one(LossPlot)
        self.message_line = self.query_one("#message", Static)
        self.change_log = self.query_one("#changelog", Static)
        self.change_log.border_title = "changes"
        self.client.attach()
        self._install_signal_handlers()
        self.set_interval(1.0 / self.refresh_hz, self.tick)
        self._first_draw = self.set_interval(0.02, self._until_drawn)  # the first screen as soon as it can be
        self.set_interval(30.0, tidy)  # a Textual cache would keep dead widgets' lines; see leaks.py
        self._check_size()

    def _install_signal_handlers(self) -> None:
        """SIGHUP (a dropped SSH session), SIGTERM and SIGINT detach: the run goes on without this view."""
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
        """Detach. After a hang-up the terminal is gone and writing to it can block shutdown for good: the run
        is not this process's, so make sure the process ends."""
        watchdog = threading.Timer(3.0, os._exit, args=(0,))
        watchdog.daemon = True
        watchdog.start()
        self.detach()

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size)  # the event's size: self.size may still be the old one here

    def _check_size(self, size=None) -> None:
        w, h = size or self.size
        # on the main screen, even when a dialog is on top, so closing the dialog shows the right thing
        self.screen_stack[0].set_class(w < MIN_SIZE[0] or h < MIN_SIZE[1], "-too-small")

    # -- the view ----------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot | None:
        return self.client.latest()

    def _until_drawn(self) -> None:
        """Draw the first snapshot the moment it arrives (``rnntui watch`` shows the run at once), then stop."""
        if self.snapshot is not None or self.client.ended:
            self._first_draw.stop()
            self.tick(force=True)

    def tick(self, force: bool = False) -> None:
        """Redraw from the latest snapshot, if there is a new one; notice when the run has ended."""
        snap = self.snapshot
        self._ticks += 1
        if self.client.ended and not self._end_shown:
            self._run_ended(snap)
            return
        if snap is None or (snap.version == self._seen_version and not force):
            return
        self._seen_version = snap.version
        with self.batch_update():  # one screen update for all panels, not one per panel
            self.status_bar.show(snap)
            self.grad_panel.show(snap)
            self.time_panel.show(snap)
            self.gate_panel.show(snap)
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
            alive = not self.client.ended
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
            where = f" → {self.save_path}" if a.action == "save" and self.save_path else ""
            yield SystemCommand(a.description, a.key_text + where, partial(self.run_action, a.action))

    # -- commands ----------------------------------------------------------------
    def send(self, command) -> None:
        if self.client.ended:
            return
        self.client.send(command)

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

    def action_next_layer(self) -> None:
        self.message_line.update(next_layer(self.screen_stack[0], self.snapshot), layout=False)

    def action_recall(self) -> None:
        if not self.client.info.has_recall:
            self.message_line.update("k: the copy-loss screen needs a corpus in recall.txt's format (a:..=a lines)",
                                     layout=False)
            return
        from .screens.recall import RecallScreen  # (the screens opened on demand are imported then: a quicker start)

        self.push_screen(RecallScreen(lambda: self.snapshot))

    def action_changelog(self) -> None:
        if not isinstance(self.screen, ChangeLogScreen):
            self.push_screen(ChangeLogScreen(lambda: self.snapshot))

    def action_trends(self) -> None:
        if not self.is_screen_installed("trends"):  # one instance: the series chosen stay chosen
            from .screens.trends import TrendsScreen

            self.install_screen(TrendsScreen(lambda: self.snapshot, refresh_hz=self.refresh_hz), name="trends")
        if self.get_screen("trends") not in self.screen_stack:
            self.push_screen("trends")

    def action_derivation(self) -> None:
        from .screens.derivation import DerivationScreen

        self.push_screen(DerivationScreen(self.client))

    def action_help(self) -> None:
        if not self.is_screen_installed("help"):
            # one instance, shown again and again: its Markdown is parsed and its widgets built once
            from .screens.help import HelpScreen

            self.install_screen(HelpScreen(self.client.info.vocab_size, (*self.BINDINGS, self.PALETTE_KEY)),
                                name="help")
        if self.get_screen("help") not in self.screen_stack:  # (the palette can ask while it is open)
            self.push_screen("help")

    def action_hyperparams(self) -> None:
        snap = self.snapshot
        hyper = snap.hyper if snap is not None else self.client.info.config.hyper

        def apply(changes: dict | None) -> None:
            if changes:
                self.send(Set(changes))

        self.push_screen(HyperparamsScreen(hyper), apply)

    @property
    def save_path(self) -> str | None:
        """Where the run saves (ctrl+s, stop): its own checkpoint, or the free name beside it it last used."""
        snap = self.snapshot
        if snap is not None and snap.saved_path:
            return snap.saved_path
        return snap.checkpoint_path if snap is not None else self.client.info.checkpoint_path

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """The palette's Screenshot (also ``action_screenshot``): an SVG in the working folder rather than
        Textual's ~/Downloads, which a server seldom has; the message line
        says where it went, or why it did not."""
        folder = path or "."
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
        self.send(SaveCheckpoint())  # (the run's own checkpoint; a free name beside it if that file is not its)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and isinstance(self.screen, ConfirmQuit) and not self.screen.answers(event):
            return  # typed before the dialog was there: not an answer to it
        await super().on_event(event)

    def action_quit(self) -> None:
        if self.client.ended:  # the run is over (its final screen is shown): nothing to ask
            self._leave("ended")
            return
        if self._stopping or isinstance(self.screen, ConfirmQuit):
            return

        def chosen(choice: str | None) -> None:
            if choice == "detach":
                self.detach()
            elif choice == "stop":
                self.stop_run()

        self.push_screen(ConfirmQuit(lambda: self.snapshot, self.client.info.name, self.save_path,
                                     refresh_hz=self.refresh_hz), chosen)

    def detach(self) -> None:
        """Leave the run training without this view."""
        self._leave("detached")

    def stop_run(self) -> None:
        """Tell the run to stop between steps and save; the app closes when it has ended."""
        if self._stopping:
            return
        self._stopping = True
        self.message_line.update(f"stopping the run… saving {escape(self.save_path or 'its checkpoint')}",
                                 layout=False)
        self.send(Stop(save=True))

    def _run_ended(self, snap: Snapshot | None) -> None:
        """The run has ended (or the connection to it is lost): close if the user stopped it, else say so and
        keep the final screen."""
        self._end_shown = True
        if snap is not None:
            self._seen_version = -1
            self.tick(force=True)
        if self._stopping:
            self._leave("stopped")
            return
        why = self.client.end_reason or "the run has ended"
        lost = not self.client.run_ended
        self.message_line.show(why + (" · `rnntui runs` says whether it still lives" if lost else ""),
                               ("q to close", "q close"), alert=lost or bool(snap and snap.error))

    def _leave(self, outcome: str) -> None:
        self.outcome = self.outcome or outcome
        code = self._exit_code()
        self.exit(code, return_code=code)

    def _exit_code(self) -> int:
        snap = self.snapshot
        lost = self.client.ended and not self.client.run_ended
        return 1 if (snap is not None and snap.error) or lost else 0

    @property
    def failed(self) -> bool:
        """Whether the app has ended without deciding to: every way out of ours exits with a result (``exit``),
        while an error in the app itself makes Textual end it with none."""
        return not self.is_running and self.return_value is None


__all__ = ["RnnTuiApp"]
