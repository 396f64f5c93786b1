"""SamplePanel: the latest generated text and a scrollable history of earlier samples."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ...corpus import printable
from ...trainer import Sample, Snapshot

HEADER_STYLE = Style(dim=True)


def safe_text(text: str) -> str:
    """Control characters shown safely (tabs and odd controls escaped); newlines kept as line breaks."""
    return "\n".join(printable(line) for line in text.split("\n"))


class SamplePanel(ScrollView):
    """Newest sample first; scroll down for older ones.

    Each sample is wrapped into lines once (per panel width) and kept until it leaves the trainer's
    history, so a new sample costs only its own lines — the panel is redrawn while training runs,
    and re-wrapping the whole history every time held the interpreter long enough to slow training.

    At the top the panel follows the newest sample; scrolled down to an older one, it stays on the
    line being read while new samples arrive above it.
    """

    BORDER_TITLE = "samples"

    def __init__(self, **kw):
        super().__init__(**kw)
        self._shown: tuple | None = None
        self._wrapped: dict[tuple, list[Strip]] = {}  # (step, temperature, text, header?, width) -> lines
        self._lines: list[Strip] = []
        self._blocks: list[tuple[tuple, int, int]] = []  # (sample, first line, end line) as now laid out

    def show(self, snap: Snapshot) -> None:
        width = self.scrollable_content_region.width
        samples = snap.samples
        key = (width, len(samples), samples[-1] if samples else None)  # a new width re-wraps
        if key == self._shown:
            return
        self._shown = key
        if not samples:
            self.border_title = "samples"
            self._blocks = []
            self._set_lines(self._wrap(Text("no sample yet (s samples now)", style=HEADER_STYLE), width))
            return
        latest = samples[-1]
        self.border_title = f"sample @{latest.step} T={latest.temperature:g}"
        wrapped, lines, blocks = {}, [], []
        for i, s in enumerate(reversed(samples)):
            k = (s.step, s.temperature, s.text, i > 0, width)
            block = self._wrapped.get(k)
            if block is None:
                block = self._wrap(self._text(s, header=i > 0), width)
            wrapped[k] = block
            blocks.append((k[:3], len(lines), len(lines) + len(block)))
            lines.extend(block)
        self._wrapped = wrapped  # only the samples still in the history
        y = self._reading_position(blocks)
        self._blocks = blocks
        self._set_lines(lines)
        if y is not None:
            self.scroll_to(y=y, animate=False, immediate=True)

    def _reading_position(self, blocks: list[tuple[tuple, int, int]]) -> int | None:
        """Where the line at the top of the view is in the new layout ``blocks``; None at the top (follow
        the newest). A sample's text ends its block (a header may come before it), so the line is
        found by its distance from the end of its sample."""
        y = self.scroll_offset.y
        if y <= 0:
            return None
        old = next(((key, end) for key, start, end in self._blocks if start <= y < end), None)
        if old is None:
            return None
        new = next(((start, end) for key, start, end in blocks if key == old[0]), None)
        if new is None:  # that sample left the history: stay at the end
            return blocks[-1][2] if blocks else 0
        return max(new[0], new[1] - (old[1] - y))

    @staticmethod
    def _text(s: Sample, *, header: bool) -> Text:
        body = Text(safe_text(s.text))
        if not header:
            return body
        return Text.assemble((f"── step {s.step} · T={s.temperature:g} ──\n", HEADER_STYLE), body)

    def _wrap(self, text: Text, width: int) -> list[Strip]:
        if width <= 0:
            return []
        console = self.app.console
        return [Strip(line) for line in console.render_lines(text, console.options.update_width(width),
                                                                    pad=False)]

    def _set_lines(self, lines: list[Strip]) -> None:
        self._lines = lines
        size = Size(self.scrollable_content_region.width, len(lines))
        scrollbar = size.height > self.container_size.height
        if scrollbar == self.show_vertical_scrollbar and hasattr(self, "_scroll_update"):
            # the panel's shape stays: move the scrollbar without a relayout of the whole screen
            # (what Textual does itself for a size change that needs no layout)
            self.set_reactive(SamplePanel.virtual_size, size)
            self._scroll_update(size)
        else:
            self.virtual_size = size
        self.refresh()

    def render_lines(self, crop):
        self._line_style = (self.scrollable_content_region.width, self.rich_style)  # once per redraw, not per line
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width, style = getattr(self, "_line_style", None) or (self.scrollable_content_region.width, self.rich_style)
        index = self.scroll_offset.y + y
        if 0 <= index < len(self._lines):
            return self._lines[index].crop_extend(0, width, style).apply_style(style)
        return Strip.blank(width, style)
