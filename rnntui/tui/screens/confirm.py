"""ConfirmQuit: asked before quitting would discard unsaved training progress."""

from __future__ import annotations

from collections.abc import Callable

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Button, Static


def unsaved_text(snap) -> str:
    """"Training is at step 13826 and not saved." (or "…, not saved since step 13000.") for ``snap``."""
    if snap is None:
        return "Training is not saved."
    if snap.saved_step is None:
        return f"Training is at step {snap.step} and not saved."
    return f"Training is at step {snap.step}, not saved since step {snap.saved_step}."


class ConfirmQuit(ModalScreen[str]):
    """Returns "save" (save, then quit), "quit" (quit without saving) or "cancel".

    Training goes on while the dialog is open, so the step it names follows the latest snapshot
    (``snapshot()``, read ``refresh_hz`` times a second). ``save_path`` is the file "save" writes and
    ``why``, when not empty, why it is not the usual one ("run.npz belongs to another run").
    """

    BINDINGS = [Binding("escape,n", "choose('cancel')", "cancel"), Binding("y", "choose('quit')", "quit"),
                Binding("s", "choose('save')", "save")]

    def __init__(self, snapshot: Callable[[], object], save_path: str, why: str = "", *, refresh_hz: float = 2.0):
        super().__init__()
        self.snapshot = snapshot
        self.save_path = save_path
        self.why = why
        self.refresh_hz = refresh_hz

    def compose(self) -> ComposeResult:
        where = escape(self.save_path) + (f" ({escape(self.why)})" if self.why else "")
        with Vertical(id="confirm-box"):
            yield Static(unsaved_text(self.snapshot()), id="confirm-text")
            yield Static(f"[b]s[/] save to {where} and quit · [b]y[/] quit without saving · "
                         "[b]esc[/] keep training", id="confirm-keys")
            with Horizontal(id="confirm-buttons"):
                yield Button("Save & quit", id="save", variant="primary")
                yield Button("Quit", id="quit", variant="error")
                yield Button("Cancel", id="cancel")

    _shown: float | None = None

    def on_mount(self, event: events.Mount) -> None:
        self._shown = event.time  # the clock of every message, keys included
        self.set_interval(1.0 / self.refresh_hz, self.show_step)

    def answers(self, key: events.Key) -> bool:
        """Whether ``key`` can be an answer: keys typed before the dialog was on the screen (typed ahead, or
        pasted along with the q that opened it — "question" holds an s) must not save, quit or cancel. The app
        asks before routing a key (RnnTuiApp.on_event): a key already on its way to the screen below would
        otherwise meet this dialog's bindings on its way back up."""
        return self._shown is not None and key.time >= self._shown

    def show_step(self) -> None:
        self.query_one("#confirm-text", Static).update(unsaved_text(self.snapshot()))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

    def action_choose(self, what: str) -> None:
        self.dismiss(what)
