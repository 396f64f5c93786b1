"""ChangeLogScreen: every change of the run (settings, pauses, saves, alerts) with its step, live.

The message line under the panels holds only the latest change, cut to its row; the change-log
panel exists only on wide and tall terminals. This screen (key ``L``) shows each change whole at
any terminal size, newest last, and follows new ones while the view is at the end.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Static

from ...trainer import Change, Snapshot
from ..keys import key_hints


def change_line(change: Change, step_width: int = 6) -> str:
    """One change as markup: its step (dim), its text; an alert (``Change.alert``: a divergence, a crash, a
    failed save, a refused setting) marked ⚠ in the error colour."""
    text = escape(change.text)
    if change.alert:
        text = f"[$error b]⚠ {text}[/]"
    return f"[dim]{change.step:>{step_width}}[/] {text}"


class ChangeLogScreen(ModalScreen[None]):
    """The run's changes, newest last; updates while open; escape or L closes."""

    BINDINGS = [Binding("escape,L,shift+l", "close", "close")]

    def __init__(self, source: Callable[[], Snapshot | None], refresh_hz: float = 2.0):
        super().__init__()
        self.source = source  # the latest snapshot, asked again on every refresh
        self.refresh_hz = refresh_hz
        self._shown: tuple | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="changelog-head")
        with VerticalScroll(id="changelog-body"):
            yield Static(id="changelog-lines")
        yield Static(f"[dim]↑/↓ pgup/pgdn scroll · {escape(key_hints(self.BINDINGS))}[/]", id="changelog-keys")

    def on_mount(self) -> None:
        self.show()
        self.query_one("#changelog-body").scroll_end(animate=False, immediate=True)
        self.set_interval(1.0 / self.refresh_hz, self.show)

    def show(self) -> None:
        """Redraw if the run has new changes; stay at the end if the view was there, else where it was."""
        snap = self.source()
        changes = snap.changes if snap is not None else ()
        key = (len(changes), changes[-1] if changes else None)
        if key == self._shown:
            return
        self._shown = key
        body = self.query_one("#changelog-body", VerticalScroll)
        at_end = body.scroll_y >= body.max_scroll_y
        width = len(str(max((c.step for c in changes), default=0)))
        alerts = sum(c.alert for c in changes)
        self.query_one("#changelog-head", Static).update(
            f"[b]Changes[/] · {len(changes)} kept by the trainer, newest last"
            + (f" · [$error]⚠ {alerts} alert{'s' if alerts != 1 else ''}[/]" if alerts else ""))
        self.query_one("#changelog-lines", Static).update(
            "\n".join(change_line(c, width) for c in changes) or "[dim]no changes yet[/]")
        if at_end:
            body.scroll_end(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
