"""RecallScreen: the long-memory task read off the model — the loss on the copies of recall.txt, per distance k.

The figures are measured by the trainer (:class:`rnntui.recall.RecallProbe`, at validation) and
arrive in the snapshots; this screen only draws the latest of them, live.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from ...recall import EVERY, RecallFigures, RecallRow, window_share
from ...trainer import Snapshot
from ..widgets.footer import TidyFooter
from ..widgets.text import BLOCKS

#: Cells of a loss bar; it spans 0 … 2 × the largest chance loss, so "not recalled" sits in its middle.
BAR = 20
#: Measurements shown in a row's history (the most recent ones).
HISTORY = 16
EIGHTHS = " ▏▎▍▌▋▊▉"
#: A copy loss below this share of ln(markers) is drawn green: recalled.
RECALLED_BELOW = 0.1

NOT_RECALL = ("This corpus is not in recall.txt's format, so there is no copy to score. The probe needs "
              "nearly every line to be one task, m:FILLER=m (a marker, ':', '.' and '-' filler, '=', the "
              "marker again), and at least 20 such lines held out — see sample_data/README.md.")


def loss_bar(loss: float, chance: float, scale: float) -> str:
    """``loss`` as a bar of :data:`BAR` cells over 0 … ``scale``; ┊ marks ``chance`` where the bar does not
    reach it; › ends a bar cut off at the right."""
    cells = max(0.0, min(loss / scale, 1.0)) * BAR if scale > 0 else 0.0
    full, part = int(cells), int((cells - int(cells)) * 8)
    at = min(BAR - 1, int(chance / scale * BAR)) if scale > 0 and chance > 0 else -1
    out = []
    for i in range(BAR):
        if i < full:
            out.append("█")
        elif i == full and part:
            out.append(EIGHTHS[part])
        else:
            out.append("┊" if i == at else " ")
    if loss > scale:
        out[-1] = "›"
    return "".join(out)


def history_line(values: list[float], scale: float) -> str:
    """The last :data:`HISTORY` losses as blocks on the fixed scale 0 … ``scale`` (the bars' scale)."""
    out = []
    for v in values[-HISTORY:]:
        x = max(0.0, min(v / scale, 1.0)) if scale > 0 else 0.0
        out.append(BLOCKS[min(len(BLOCKS) - 1, int(x * (len(BLOCKS) - 1) + 0.5))])
    return "".join(out)


def _row(r: RecallRow, T: int, scale: float, history: list[float]) -> str:
    beyond = r.k > T
    window = "beyond T" if beyond else f"{100 * window_share(r.k, T):5.0f} % "
    recalled = r.chance_loss > 0 and r.loss < RECALLED_BELOW * r.chance_loss
    style = "$success" if recalled else ("$text-muted" if beyond else "$accent")
    bar = f"[{style}]{loss_bar(r.loss, r.chance_loss, scale)}[/]"
    line = (f"{r.k:>4} {r.copies:>6} {window:>9} {r.loss:6.3f} {bar} {100 * r.accuracy:4.0f} %  "
            f"[$primary]{history_line(history, scale)}[/]")
    return f"[dim]{line}[/]" if beyond and not recalled else line


def figures_text(fig: RecallFigures, step: int) -> str:
    """The screen's text for ``fig``, measured at ``fig.step`` while the trainer is at ``step`` (fits 80 columns)."""
    T = fig.seq_length
    chance = max((r.chance_loss for r in fig.rows), default=0.0)
    scale = 2 * chance if chance > 0 else max([1.0] + [r.loss for r in fig.rows])
    steps = [s for s, _ in fig.history]
    where = "held-out lines (validation text)" if fig.held_out else "last lines of the training text (no validation)"
    now = f" (now {step:,})" if step != fig.step else ""
    lines = [
        f"[b]Recall per distance k[/] · measured at step {fig.step:,}{now} · seq length T = {T}",
        f"[dim]{sum(r.copies for r in fig.rows)} {where} · at validation, every {EVERY}+ steps[/]",
        "",
        f"[b]{'k':>4} {'copies':>6} {'in window':>9} {'loss':>6} {f'bar 0 … {scale:.2f} nats':<{BAR}} {'acc':>6}  "
        "history[/]",
    ]
    if fig.rows and fig.rows[0].k > T:
        lines.append(f"[$warning]╌╌ every distance is beyond the BPTT window T = {T} ╌╌[/]")
    for i, r in enumerate(fig.rows):
        if i and r.k > T >= fig.rows[i - 1].k:
            lines.append(f"[$warning]╌╌ k > T = {T}: beyond the BPTT window, no gradient links copy to marker ╌╌[/]")
        lines.append(_row(r, T, scale, [losses[i] for _, losses in fig.history]))
    markers = sorted({r.markers for r in fig.rows})
    chance_words = (f"ln {markers[0]} = {fig.rows[0].chance_loss:.2f}: not recalled (a guess among {markers[0]} "
                    "markers)" if len(markers) == 1 else "ln(markers of that k): not recalled")
    lines += [
        "",
        f"[dim]┊ {chance_words} · green: recalled",
        "acc: the most likely next character is the copy · history: "
        + (f"steps {steps[-HISTORY:][0]:,} … {steps[-1]:,}" if steps else "none yet") + "[/]",
        "",
        "In window: the share (T − k + 1)/T of copies whose marker is in the same BPTT window as the '=' (the "
        "marker is read k − 1 steps before it), so that the gradient links them; none when k > T. Raise "
        "--seq-length to bring a distance into reach; whether it is then learnt is the vanishing-gradient question.",
    ]
    return "\n".join(lines)


def recall_text(snap: Snapshot | None, available: bool = True) -> str:
    """What the screen shows for the latest snapshot."""
    if not available:
        return NOT_RECALL
    if snap is None:
        return "[dim]waiting for the trainer…[/]"
    if snap.recall is None:
        every = snap.hyper.val_every
        if not every:
            return ("No measurement: the copy loss is measured at validation, and validation is off "
                    "(validation interval 0). Press h and set an interval, e.g. 100.")
        return (f"[dim]The copy loss per distance k is measured at validation (every {every} steps, the probe "
                f"at most every {EVERY}); the first comes at step {every * (snap.step // every + 1):,}.[/]")
    return figures_text(snap.recall, snap.step)


class RecallScreen(Screen):
    """Copy loss, accuracy and copies per distance k, live from ``latest()`` (the newest snapshot)."""

    BINDINGS = [Binding("escape,k", "app.pop_screen", "back")]

    def __init__(self, latest: Callable[[], Snapshot | None], *, available: bool = True, refresh_hz: float = 2.0):
        super().__init__()
        self.latest = latest
        self.available = available
        self.refresh_hz = refresh_hz
        self._shown: str | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="recall-body"):
            yield Static(id="recall-figures")
        yield TidyFooter(show_command_palette=False)

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(1.0 / self.refresh_hz, self.redraw)

    def redraw(self) -> None:
        text = recall_text(self.latest(), self.available)
        if text != self._shown:
            self._shown = text
            self.query_one("#recall-figures", Static).update(text)
