"""HyperparamsScreen: a form for every setting the trainer accepts while it runs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from ...config import CLIP_MODES, HYPER_VALIDATORS, OPTIMIZERS, ConfigError, HyperParams

FIELDS = (  # (name, label, kind)
    ("lr", "learning rate", "input"),
    ("optimizer", "optimizer", OPTIMIZERS),
    ("clip_mode", "clip mode", CLIP_MODES),
    ("clip", "clip threshold", "input"),
    ("temperature", "temperature", "input"),
    ("sample_length", "sample length", "input"),
    ("sample_every", "sample every", "input"),
    ("val_every", "validate every", "input"),
)


class FormSelect(Select):
    """A Select on which Enter applies the form, as in every other field; space, ↑ or ↓ open its list
    (and inside the list Enter picks the highlighted choice)."""

    BINDINGS = [Binding("enter", "screen.apply", "apply", show=False)]


class HyperparamsScreen(ModalScreen[dict | None]):
    """Returns the changed, validated settings on Apply, or None on Cancel."""

    BINDINGS = [Binding("escape", "cancel", "cancel"), Binding("ctrl+s,ctrl+enter", "apply", "apply", show=False)]

    def __init__(self, hyper: HyperParams):
        super().__init__()
        self.hyper = hyper

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="hyper-form"):
            yield Static("[b]Hyperparameters[/] · applied at the next step · enter applies (from any field), "
                         "esc cancels · space opens a list · intervals in steps, 0 = never", id="hyper-title")
            with Grid(id="hyper-grid"):
                for name, label, kind in FIELDS:
                    yield Label(label, classes="hyper-label")
                    value = getattr(self.hyper, name)
                    if kind == "input":
                        yield Input(value=f"{value:g}" if isinstance(value, float) else str(value), id=f"f-{name}",
                                    classes="hyper-input", compact=True)
                    else:
                        yield FormSelect([(c, c) for c in kind], value=value, allow_blank=False, id=f"f-{name}",
                                         classes="hyper-input", compact=True)
                    yield Static("", id=f"e-{name}", classes="hyper-error")
            with Horizontal(id="hyper-buttons"):
                yield Button("Apply", id="apply", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#f-lr", Input).focus()

    def _raw(self, name: str):
        return self.query_one(f"#f-{name}").value

    def validate_all(self) -> dict | None:
        """The changed settings, or None (with messages shown in the form) when any is invalid."""
        changes, ok = {}, True
        for name, _, _ in FIELDS:
            err = self.query_one(f"#e-{name}", Static)
            try:
                value = HYPER_VALIDATORS[name](self._raw(name))
            except ConfigError as e:
                err.update(f"[$error]✗ {e}[/]")
                ok = False
                continue
            err.update("")
            if value != getattr(self.hyper, name):
                changes[name] = value
        return changes if ok else None

    def on_input_changed(self, event: Input.Changed) -> None:
        name = (event.input.id or "")[2:]
        err = self.query_one(f"#e-{name}", Static)
        try:
            HYPER_VALIDATORS[name](event.value)
            err.update("")
        except ConfigError as e:
            err.update(f"[$error]✗ {e}[/]")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            self.action_apply()
        else:
            self.action_cancel()

    def action_apply(self) -> None:
        changes = self.validate_all()
        if changes is not None:
            self.dismiss(changes)

    def action_cancel(self) -> None:
        self.dismiss(None)
