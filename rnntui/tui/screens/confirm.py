"""ConfirmQuit: what q asks — detach from the run (it goes on training) or stop it (it saves and ends)."""

from __future__ import annotations

from collections.abc import Callable

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Button, Static


def step_text(name: str, snap) -> str:
    """"Run persuasion-1 is at step 13826, saved at step 13000." (or "…, not saved yet.") for ``snap``."""
    if snap is None:
        return f"Run {name} has not reported a step yet."
    saved = "not saved yet" if snap.saved_step is None else f"saved at step {snap.saved_step}"
    return f"Run {name} is at step {snap.step}, {saved}."


class ConfirmQuit(ModalScreen[str]):
    """Returns "detach" (close the app, the run goes on), "stop" (stop the run: it saves, then ends) or "cancel".

    The run goes on while the dialog is open, so the step it names follows the latest snapshot
    (``snapshot()``, read ``refresh_hz`` times a second). ``save_path`` is where "stop" saves.
    """

    BINDINGS = [Binding("escape,c,n", "choose('cancel')", "cancel"), Binding("d", "choose('detach')", "detach"),
                Binding("s", "choose('stop')", "stop")]

    def __init__(self, snapshot: Callable[[], object], name: str, save_path: str | None, *,
                 refresh_hz: float = 2.0):
        super().__init__()
        self.snapshot = snapshot
        self.run_name = name
        self.save_path = save_path
        self.refresh_hz = refresh_hz

    def compose(self) -> ComposeResult:
        where = escape(self.save_path or "its checkpoint")
        name = escape(self.run_name)
        with Vertical(id="confirm-box"):
            yield Static(escape(step_text(self.run_name, self.snapshot())), id="confirm-text")
            yield Static(f"[b]d[/] detach: the run goes on training in the background; [b]rnntui watch {name}[/] "
                         f"shows it again, from any terminal\n"
                         f"[b]s[/] stop the run: it saves to {where} and ends\n"
                         "[b]esc[/] cancel: back to the run", id="confirm-keys")
            with Horizontal(id="confirm-buttons"):
                yield Button("Detach", id="detach", variant="primary")
                yield Button("Stop & save", id="stop", variant="error")
                yield Button("Cancel", id="cancel")

    _shown: float | None = None

    def on_mount(self, event: events.Mount) -> None:
        self._shown = event.time  # the clock of every message, keys included
        self.set_interval(1.0 / self.refresh_hz, self.show_step)

    def answers(self, key: events.Key) -> bool:
        """Whether ``key`` can be an answer: keys typed before the dialog was on the screen (typed ahead, or
        pasted along with the q that opened it — "question" holds an s) must not detach, stop or cancel. The
        app asks before routing a key (RnnTuiApp.on_event): a key already on its way to the screen below would
        otherwise meet this dialog's bindings on its way back up."""
        return self._shown is not None and key.time >= self._shown

    def show_step(self) -> None:
        self.query_one("#confirm-text", Static).update(escape(step_text(self.run_name, self.snapshot())))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

    def action_choose(self, what: str) -> None:
        self.dismiss(what)
