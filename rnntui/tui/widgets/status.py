"""StatusBar and MessageLine: the rows under the panels, fitted to the width they have.

The status bar holds state, step, loss, speed, time and the current settings. When they do not
fit, the least useful part is shortened or dropped first (``STATUS_STEPS``), so every part shown
is whole. The message line shows the latest change, a confirmation in one row and an alert in up
to four; one too long for that is cut with a mark that says where to read it whole (``L``, the
change-log screen).
"""

from __future__ import annotations

from textual import events
from textual.content import Content
from textual.markup import escape
from textual.widgets import Static

from ...trainer import RUNNING, Snapshot
from .text import duration, fit_parts

STATE_STYLE = {"running": "$success", "paused": "$warning", "diverged": "$error", "crashed": "$error",
               "finished": "$primary", "stopped": "$secondary"}

#: The order in which parts give way when the row is too narrow, least useful first; each mention
#: moves that part to its next shorter form (see ``status_parts``), the last form of most is "gone".
STATUS_STEPS = ("save", "run", "run", "epoch", "elapsed", "rate", "loss", "clip", "temp", "rate", "clip", "save",
                "loss", "rate", "temp", "save", "clip", "optimizer", "lr", "clip", "step")

CUT_MARK = "… (L)"  # a cut message: the change-log screen (L) has it whole


def _g(x: float) -> str:
    return f"{x:.3g}".replace("e-0", "e-").replace("e+0", "e")


def _clip_forms(mode: str, clip: float) -> tuple[str, ...]:
    if mode == "none":
        return ("clip off", "")
    if mode == "global":
        return (f"clip global {clip:g}", f"clip ‖g‖≤{clip:g}", f"‖g‖≤{clip:g}", "")
    return (f"clip element {clip:g}", f"clip ±{clip:g}", f"±{clip:g}", "")


def _save_forms(snap: Snapshot) -> tuple[str, ...]:
    """Whether the training so far is saved: with the path, with the step, as one word."""
    saved = snap.saved_step
    if saved is None:
        word = "unsaved"
        medium = word
    elif saved == snap.step:
        word = medium = "saved"
    else:
        word, medium = "unsaved", f"saved @{saved}"
    full = f"ckpt {snap.checkpoint_path} " + (f"@{saved}" if saved is not None else "unsaved") \
        if snap.checkpoint_path else medium
    return (full, medium, word, "")


def status_parts(snap: Snapshot, run: str | None = None) -> dict[str, tuple[str, ...]]:
    """Each part of the status bar with its forms, longest first ("" = may be dropped), in display order.

    The speed shows only while training runs: a paused, diverged, crashed or finished run has no rate.
    ``run``: the run's name, which gives way right after the checkpoint's path (the quit dialog and the help name it
    too).
    """
    hp = snap.hyper
    parts: dict[str, tuple[str, ...]] = {"state": (f" {snap.state.upper()} ",)}
    if run:
        parts["run"] = (f"run {run}", run, "")
    parts |= {
        "step": (f"step {snap.step}", ""),
        "epoch": (f"ep {snap.epoch} {100 * snap.epoch_progress:.0f}%", ""),
    }
    if snap.loss_ema is not None:
        parts["loss"] = (f"loss ema {snap.loss_ema:.3f}", f"ema {snap.loss_ema:.3f}", "")
    rate = snap.chars_per_sec
    if snap.state == RUNNING and rate > 0:
        parts["rate"] = (f"{rate / 1000:.1f}k ch/s", f"{rate / 1000:.0f}k ch/s", f"{rate / 1000:.0f}k/s", "")
    parts["elapsed"] = (duration(snap.elapsed), "")
    parts["optimizer"] = (hp.optimizer, "")
    parts["lr"] = (f"lr {_g(hp.lr)}", "")
    parts["clip"] = _clip_forms(hp.clip_mode, hp.clip)
    parts["temp"] = (f"temp {hp.temperature:g}", f"T {hp.temperature:g}", "")
    if snap.step > 0 or snap.saved_step is not None:
        parts["save"] = _save_forms(snap)
    return parts


def status_line(snap: Snapshot, width: int, run: str | None = None) -> str:
    """The status bar's markup for a row ``width`` cells wide (``run``: the run's name)."""
    kept = fit_parts(status_parts(snap, run), width, STATUS_STEPS)
    out = []
    for name, text in kept.items():
        if name == "state":
            out.append(f"[b {STATE_STYLE.get(snap.state, '$foreground')} reverse]{escape(text)}[/]")
        else:
            out.append(escape(text))
    return " ".join(out)


class _FittedLine(Static):
    """A one-line row that redraws itself for its new width on a resize."""

    def _width(self) -> int:
        return self.content_size.width or max(0, self.app.size.width - 2)

    def _draw(self) -> None:
        raise NotImplementedError

    def on_resize(self, event: events.Resize) -> None:
        self._draw()


class StatusBar(_FittedLine):
    """State, step, loss, speed, time and settings; parts shortened or dropped to fit, never cut."""

    _snap: Snapshot | None = None
    run: str | None = None  # the run's name, shown where the row has room

    def show(self, snap: Snapshot) -> None:
        self._snap = snap
        self._draw()

    def _draw(self) -> None:
        if self._snap is not None:
            self.update(status_line(self._snap, self._width(), self.run), layout=False)  # fixed height: no relayout


def _message_markup(lead: str, text: str, hint: str, alert: bool) -> str:
    body = escape(lead + text)
    if alert:
        body = f"[$error b]{body}[/]"
    return body + (f" — {escape(hint)}" if hint else "")


def message_rows(markup: str, width: int) -> int:
    """How many rows ``markup`` takes when wrapped to ``width`` cells."""
    return max(1, len(Content.from_markup(markup).wrap(width))) if width > 0 else 1


def fit_message(text: str, width: int, hints: tuple[str, ...] = (), *, alert: bool = False, rows: int = 1) -> str:
    """The message line's markup in at most ``rows`` rows of ``width`` cells: ``text`` whole with the
    longest of ``hints`` (what to do next) that fits; else ``text`` cut with ``CUT_MARK`` (the change
    log has it whole), keeping the longest hint that leaves it some room: the keys to press matter
    more than the rest of a text that can be read elsewhere. An alert is marked ⚠ and drawn in the
    error colour."""
    lead = "⚠ " if alert else ""

    def fits(t: str, h: str) -> bool:
        return message_rows(_message_markup(lead, t, h, alert), width) <= rows

    for hint in hints or ("",):
        if fits(text, hint):
            return _message_markup(lead, text, hint, alert)
    start = text[:24]
    hint = next((h for h in hints if fits(start + CUT_MARK, h)), "")
    lo, hi = 0, len(text)  # the longest start of the text that fits with the mark
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(text[:mid].rstrip() + CUT_MARK, hint):
            lo = mid
        else:
            hi = mid - 1
    return _message_markup(lead, text[:lo].rstrip() + CUT_MARK, hint, alert)


class MessageLine(_FittedLine):
    """The latest change: a confirmation in one row, an alert (marked ⚠, in $error) in up to
    ``ALERT_ROWS`` rows; what does not fit is cut with ``CUT_MARK`` (the change log, L, shows it whole)."""

    ALERT_ROWS = 4

    _shown: tuple[str, tuple[str, ...], bool] | None = None

    def show(self, text: str, hints: tuple[str, ...] = (), *, alert: bool = False) -> None:
        shown = (text, hints, alert)
        if shown != self._shown:
            self._shown = shown
            self._draw()

    def update(self, content="", *, layout: bool = True) -> None:
        """Show ``content`` (markup or text) as a plain message, fitted like any other."""
        self.show(content.plain if isinstance(content, Content) else Content.from_markup(str(content)).plain)

    def _draw(self) -> None:
        if self._shown is None:
            return
        text, hints, alert = self._shown
        width = self._width()
        markup = fit_message(text, width, hints, alert=alert, rows=self.ALERT_ROWS if alert else 1)
        rows = message_rows(markup, width)
        relayout = self.styles.height is None or self.styles.height.value != rows
        if relayout:  # an alert takes the rows it needs, and gives them back after
            self.styles.height = rows
        super().update(markup, layout=relayout)
