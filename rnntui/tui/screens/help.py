"""HelpScreen: every figure in one line (what it is, what healthy looks like) and every key."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# rnntui — what you are looking at

**Loss** — cross-entropy per character in nats (÷ ln 2 for bits); grey raw, cyan EMA, orange validation.
Healthy: falls from ln V (≈4.2 for 65 characters) towards 1.5–2 on English; val close to train.
Magenta lines mark where a setting changed.

**Gradients** — one row per parameter (u input→hidden, w hidden→hidden, v hidden→output, bh, by) and the total.
- *‖g‖ pre*: L2 norm of the gradient before clipping. Healthy: steady, no spikes of 10× or more.
- *post*: the norm after clipping, marked ↓ (in the warning colour) when the clip changed it. Always clipped =
  threshold too low or lr too high. The title says on how many of the last 100 steps the clip fired.
- *max|g|*: the largest entry before clipping; element mode clips entries beyond ±threshold.
- *clip%*: share of entries the clip changed (global mode: 100% when it rescaled, else 0%).
- *Δp/p*: update-to-weight ratio ‖Δp‖/‖p‖ of the last step. Healthy: about 1e-3; above 1e-1 (marked !, in the error
  colour) is too large.
- Narrow panels keep ‖g‖ pre, post and Δp/p first. The sparkline is ‖g‖ pre over the run (wide panels add Δp/p),
  log scale, each row on its own scale.

**Through time** — ‖∂E/∂hₜ‖ of the latest batch for t = 1…T, log scale, newest step on the right.
- *h₁/h_T*: how much of the gradient at the last step is left at the first. Near 0 = vanishing.
- *per-step ratio*: geometric mean of ‖wᵀ·dhrawₜ‖/‖∂E/∂hₜ‖, the factor diag(1 − hₜ²)·wᵀ applies per step.
  Below 1 the gradient fades going back; above 1 it grows. Healthy: 0.5–1.
- *σmax(w)*: largest singular value of w (power iteration). Above 1 the recurrence can amplify; far above, explode.
- *tanh sat*: share of hidden units with |h| > 0.99 (their gradient is nearly 0). Healthy: below 10%.
- Status words: VANISHING, EXPLODING, SATURATED, or OK.

**Samples** — text generated from the current model, continuing the training text, at the shown temperature.
Control characters are shown escaped; scroll for older samples (tab focuses the panel, then ↑/↓).

**Status bar** — state (RUNNING, PAUSED, DIVERGED, CRASHED, FINISHED), step, epoch progress, loss EMA,
characters per second (only while running), training time, optimizer and lr, clip (±c element, ‖g‖≤c global),
temperature, save state (saved, saved @step, unsaved). On a narrow terminal the least useful go first.
The line above it is the latest change; an alert is marked ⚠; a line ending in … (L) continues in the change log.

# Keys
| key | action |
|---|---|
| space, p | pause / resume |
| + / - | learning rate ×2 / ÷2 |
| c | cycle clip mode: global → element → none |
| [ / ] | lower / raise the clip threshold (1-2-5 steps) |
| t / T | temperature −0.1 / +0.1 (0 = most likely character) |
| s | sample now |
| h | hyperparameter form (every setting; validated) |
| d | derivation: the lecture's equations on the live model |
| k | long-memory task (recall.txt-format corpora): copy loss and accuracy per distance k, held-out lines |
| ctrl+s | save a checkpoint |
| l | loss plot log / linear |
| L | change log: every change with its step, whole, live (esc closes) |
| ctrl+p | command palette |
| ? | this help |
| q, ctrl+c | quit (saves first when --checkpoint was given) |

Every change applies at the next step and is listed with its step number (L shows the list).
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Markdown(HELP)

    def action_dismiss(self) -> None:
        self.dismiss(None)
