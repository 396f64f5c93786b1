"""HelpScreen: every figure in one line (what it is, what healthy looks like) and every key."""

from __future__ import annotations

import math
from collections.abc import Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from ...trainer import RunState
from ..keys import key_table

HELP = """\
# rnntui — what you are looking at

**Loss** — cross-entropy per character in nats (÷ ln 2 for bits); the legend under the plot shows each line's glyph
in its colour: `·` raw (dots at each column's lowest and highest loss), `▄` EMA (thick), `×` validation points.
Healthy: falls from ln V (@LN_V@) towards 1.4–1.6 on English prose by 30k steps
(measured: README "Healthy ranges"); val within ~0.15 of train.
Faint `│` lines mark where a setting changed (`m` hides them). The title says the window and the EMA decay:
the EMA is computed from the recorded raw loss, ≈ the mean of the last 1/(1 − decay) steps.

**Gradients** — one row per parameter (u input→hidden, w hidden→hidden, v hidden→output, bh, by) and the total.
- *‖g‖ pre*: L2 norm of the gradient before clipping. Healthy: steady, no spikes of 10× or more.
- *post*: the norm after clipping, marked ↓ (in the warning colour) when the clip changed it. Always clipped =
  threshold too low or lr too high. The title says on how many of the last 100 steps the clip fired.
- *max|g|*: the largest entry before clipping; element mode clips entries beyond ±threshold.
- *clip%*: share of entries the clip changed (global mode: 100% when it rescaled, else 0%).
- Clipping and the optimizers (the default global 30 fires on spikes, not every step: README "Clipping"):
  - adam, rmsprop: each step is divided by the running RMS of the gradient, so rescaling the gradient changes
    the step little; clipping only tames a sudden spike (and a step clipped every time is barely different).
  - adagrad: divides by the root of all past squared gradients; clipped gradients add less to it, so its steps
    shrink more slowly.
  - sgd: the step is lr·g, so clipping sets the step's length directly.
  - momentum: clipping caps each gradient added to the velocity; the step follows over the next steps.
- *Δp/p*: update-to-weight ratio ‖Δp‖/‖p‖ of the last step. Healthy: about 1e-3; above 1e-1 (marked !, in the error
  colour) is too large.
- Narrow panels keep ‖g‖ pre, post and Δp/p first. The sparkline is ‖g‖ pre over the run (wide panels add Δp/p),
  log scale, each row on its own scale.

**Gradient reach** (the through-time panel) — the window's last loss alone, followed back through time:
‖∂E_T/∂h_(T−d)‖ ÷ ‖∂E_T/∂h_T‖ for lags d = 0…T−1 as log bars on a fixed axis (█ = 1, ▁ = 1e-4, · below,
▲ above 1), lag 0 on the left. Measured every 50 steps, on the weights of that step (@N in the title when older).
- *reach*: the first lag where it is below 1 % of its start, or "beyond T". *×/step*: the geometric-mean factor
  per step back. Each step back multiplies by diag(1 − h²)·wᵀ.
- *status*: VANISHING when the reach is shorter than half the window (T/2); EXPLODING when, going back, it grows
  (×/step > 1) to 10× its start or more; SATURATED when more than 90 % of the tanh units have |h| > 0.99;
  else OK. Beside VANISHING its likely cause: "saturated" (over half the units saturated), "σmax<1" (w alone
  shrinks every step back), or "(1−h²)·w" (their product does); beside EXPLODING: "σmax>1".
- Healthy (measured over 30k default steps on persuasion.txt and tinyshakespeare, README "Healthy ranges"):
  ×0.68–0.85/step and a reach from 12 steps to beyond T at T = 25, growing as it learns. At T = 50 the same
  factor reads VANISHING, which is true: one loss's gradient does not cross half that window.
- *σmax(w)*: largest singular value of w (power iteration). Above 1 the recurrence can amplify; far above, explode.
- *sat*: share of tanh units with |h| > 0.99 (gradient 1 − h² < 0.02). Healthy runs climb to 60–77 % by 30k steps
  while still learning; above 90 % reads SATURATED.
- *all-loss*: ‖∂E/∂hₜ‖ of the whole loss (every step's loss), t = 1…T, log scale. It stays flat however fast the
  gradient vanishes, because every step's own loss refills it: it is not a measure of reach.

**Samples** — text generated from the current model, continuing the training text, at the shown temperature.
Control characters are shown escaped; scroll for older samples (tab focuses the panel, then ↑/↓).

**Status bar** — state (@STATES@), step, epoch progress, loss EMA,
characters per second (only while running), training time, optimizer and lr, clip (±c element, ‖g‖≤c global),
temperature, save state (saved, saved @step, unsaved). On a narrow terminal the least useful go first.
The line above it is the latest change; an alert is marked ⚠; a line ending in … (L) continues in the change log.

# Keys
@KEYS@

Every change applies at the next step and is listed with its step number (L shows the list).
"""


def help_text(vocab_size: int | None = None, bindings: Iterable[Binding] = ()) -> str:
    """The help, with the figures that depend on the run computed from it, and the keys of ``bindings`` (the
    main screen's) as a table made from them (``keys.key_table``)."""
    if vocab_size and vocab_size > 1:
        ln_v = f"ln V ≈ {math.log(vocab_size):.2f} for these {vocab_size} characters"
    else:
        ln_v = "ln V for V characters: what a model that knows nothing scores"
    states = ", ".join(s.upper() for s in RunState)
    return HELP.replace("ln V (@LN_V@)", ln_v).replace("@STATES@", states).replace("@KEYS@", key_table(bindings))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]

    def __init__(self, vocab_size: int | None = None, bindings: Iterable[Binding] = ()):
        super().__init__()
        self.vocab_size = vocab_size
        self.bindings = tuple(bindings)  # the keys the table lists: the main screen's

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Markdown(help_text(self.vocab_size, self.bindings))

    def action_dismiss(self) -> None:
        self.dismiss(None)
