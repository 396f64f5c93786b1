"""ConfirmQuit: asked before quitting would discard unsaved training progress."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmQuit(ModalScreen[str]):
    """Returns "save" (save, then quit), "quit" (quit without saving) or "cancel"."""

    BINDINGS = [Binding("escape,n", "choose('cancel')", "cancel"), Binding("y", "choose('quit')", "quit"),
                Binding("s", "choose('save')", "save")]

    def __init__(self, message: str, save_path: str):
        super().__init__()
        self.message = message
        self.save_path = save_path

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(self.message, id="confirm-text")
            yield Static(f"[b]s[/] save to {self.save_path} and quit · [b]y[/] quit without saving · "
                         "[b]esc[/] keep training", id="confirm-keys")
            with Horizontal(id="confirm-buttons"):
                yield Button("Save & quit", id="save", variant="primary")
                yield Button("Quit", id="quit", variant="error")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

    def action_choose(self, what: str) -> None:
        self.dismiss(what)
