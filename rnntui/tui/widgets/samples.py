"""SamplePanel: the latest generated text and a scrollable history of earlier samples."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.markup import escape
from textual.widgets import Static

from ...corpus import printable
from ...trainer import Snapshot


def safe_text(text: str) -> str:
    """Control characters shown safely (tabs and odd controls escaped); newlines kept as line breaks."""
    return "\n".join(printable(line) for line in text.split("\n"))


class SamplePanel(VerticalScroll):
    """Newest sample first; scroll down for older ones."""

    BORDER_TITLE = "samples"

    def compose(self):
        yield Static(id="sample-text")

    def on_mount(self) -> None:
        self._shown = None

    def show(self, snap: Snapshot) -> None:
        key = tuple((s.step, s.temperature) for s in snap.samples[-1:]) + (len(snap.samples),)
        if key == self._shown:
            return
        self._shown = key
        if not snap.samples:
            self.query_one("#sample-text", Static).update("[dim]no sample yet (s samples now)[/]")
            self.border_title = "samples"
            return
        latest = snap.samples[-1]
        self.border_title = f"sample @{latest.step} T={latest.temperature:g}"
        parts = []
        for i, s in enumerate(reversed(snap.samples)):
            if i:
                parts.append(f"[dim]── step {s.step} · T={s.temperature:g} ──[/]")
            parts.append(escape(safe_text(s.text)))
        self.query_one("#sample-text", Static).update("\n".join(parts))
