"""HelpScreen: every figure in one line (what it is, what healthy looks like) and every key."""

from __future__ import annotations

import math
from collections.abc import Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from ...cells import GATE_HIGH, GATE_LOW, TANH_LEVEL
from ...trainer import REACH_EVERY, RunState
from ..keys import key_of, key_table

HELP = """\
# rnntui — what you are looking at

**This run** trains in a process of its own; the app only watches it. `q` asks: *detach* (`d`: the app closes,
the run goes on training; `rnntui watch NAME` shows it again from any terminal, `rnntui runs` lists every run
with its NAME, which the quit dialog names too)
or *stop* (`s`: the run saves its checkpoint and ends). A dropped terminal (SSH gone, SIGHUP) detaches too.
`rnntui stop NAME` stops it from the command line. Several terminals can watch one run at once.

**Loss** — cross-entropy per character in nats (÷ ln 2 for bits); the legend under the plot shows each line's glyph
in its colour: `·` raw (dots at each column's lowest and highest loss), `▄` EMA (thick), `×` validation points.
Healthy: falls from ln V (@LN_V@) towards 1.4–1.6 on English prose by 30k steps
(measured: README "Healthy ranges"); val within ~0.15 of train.
Faint `│` lines mark where a setting changed (`m` hides them). The title says the window and the EMA decay:
the EMA is computed from the recorded raw loss, ≈ the mean of the last 1/(1 − decay) steps.

**Gradients** — one row per parameter (@TENSORS@) and the total.
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
- *status*: VANISHING when the reach is shorter than half the window (T/2) — for the lstm, when c's is too (a
  gradient kept in c reaches the early steps' gates however short h's reach); EXPLODING when, going back, it grows
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

@GATES@

**Samples** — text generated from the current model, continuing the training text, at the shown temperature.
Control characters are shown escaped; scroll for older samples (tab focuses the panel, then ↑/↓).

**Status bar** — state (@STATES@), the run's name, step, epoch progress, loss EMA,
characters per second (only while running), training time, optimizer and lr, clip (±c element, ‖g‖≤c global),
temperature, save state (saved, saved @step, unsaved). On a narrow terminal the least useful go first (the
checkpoint's path, then the name).
The line above it is the latest change; an alert is marked ⚠; a line ending in … (L) continues in the change log.

# Keys
@KEYS@

Every change applies at the next step and is listed with its step number (L shows the list).
"""


TENSORS = {
    "rnn": "u input→hidden, w hidden→hidden, bh; then v hidden→output and by",
    "lstm": "w_ih input→gates, w_hh hidden→gates, b_ih, b_hh, each stacking the blocks i, f, g, o; then v "
            "hidden→output and by",
    "gru": "w_ih input→gates, w_hh hidden→gates, b_ih, b_hh, each stacking the blocks r, z, n; then v "
           "hidden→output and by",
}

GATES = {
    "lstm": """\
- *f*, the forget gate (first, in bold): cₜ = fₜ ⊙ cₜ₋₁ + iₜ ⊙ gₜ, and going back ∂E/∂cₜ₋₁ = ∂E/∂cₜ ⊙ fₜ
  (lstm-21), no weight matrix and no squashing on the way: an f near 1 (a large *right* share) carries the
  gradient far back along c (the reach panel's c row); a left-saturated f forgets, and the c reach is short.
- *i* input gate: how much of the candidate is written into c; *g* the candidate (tanh); *o* output gate,
  hₜ = oₜ ⊙ tanh(cₜ); *tanh(c)* the cell's output: where it is saturated, little gradient enters c through h.""",
    "gru": """\
- *z*, the update gate, plays the forget gate's part (first, in bold): hₜ = (1 − zₜ) ⊙ nₜ + zₜ ⊙ hₜ₋₁, and going
  back ∂E/∂hₜ₋₁ gets ∂E/∂hₜ ⊙ zₜ directly (gru-18): a z near 1 (a large *right* share) keeps h and passes its
  gradient back unchanged; a left-saturated z replaces h by the candidate at every step.
- *r* reset gate: how much of W_hn·hₜ₋₁ + b_hn enters the candidate; *n* the candidate (tanh).""",
}


def run_words(config) -> str:
    """``lstm, 2 layers, dropout 0.2`` for a run's settings."""
    layers = config.layers
    words = [config.cell, f"{layers} layer{'s' if layers > 1 else ''}"]
    if config.dropout and layers > 1:
        words.append(f"dropout {config.dropout:g} between layers")
    return ", ".join(words)


def gates_text(config, layer_key: str) -> str:
    """The gate panel's section, for the run's cell and layers (every cell, when the run is not known)."""
    cell = config.cell if config is not None else None
    layers = config.layers if config is not None else 1
    this = f" (this run: {run_words(config)})" if config is not None else ""
    if cell == "rnn":
        gates = ("This run's cell is the lecture's tanh rnn: it has no gates, and the gate panel is hidden (its "
                 "saturation is the reach panel's *sat*). `--cell lstm` or `--cell gru` trains a gated cell.")
    else:
        shown = [GATES[cell]] if cell in GATES else [f"*{c}*:\n{text}" for c, text in GATES.items()]
        gates = (f"per gate of the layer shown, over every unit, step and sequence of one pass (measured with the "
                 f"reach, every {REACH_EVERY} steps): *mean* activation, *left* the share below {GATE_LOW:g} and "
                 f"*right* the share above {GATE_HIGH:g} (left- and right-saturated, as Karpathy, Johnson & Fei-Fei "
                 f"2015 read LSTM gates); for a tanh (g, n, tanh(c)) the shares beyond ∓{TANH_LEVEL:g}. Wide panels "
                 f"add each gate's role, the σmax of its block of w_hh and a bar of the shares (░ left, ▒ between, "
                 f"█ right).\n" + "\n".join(shown))
    if layers > 1 or config is None:
        last = layers if layers > 1 else "N"
        key = layer_key[0].upper() + layer_key[1:]
        which = (f"{key} moves the reach, gate and gradient panels to the next layer (1 → 2 → … → {last} → 1); their "
                 "titles say *layer k of N*, and they start at the top layer, whose h the output layer "
                 "reads. The gradient table then shows that layer's tensors, v and by, and *all* (every tensor of "
                 "every layer); the reach panel's σmax is the largest of the layer's recurrent blocks.")
    else:
        which = f"With `--layers N` (up to 4), {layer_key} shows each layer's reach, gates and gradients in turn."
    return f"**Gates**{this} — {gates}\n\n**Layers** — {which}"


def help_text(vocab_size: int | None = None, bindings: Iterable[Binding] = (), config=None) -> str:
    """The help, with the figures that depend on the run computed from it (ln V, the cell and layers of ``config``:
    a :class:`~rnntui.config.TrainConfig`), and the keys of ``bindings`` (the main screen's) as a table made from
    them (``keys.key_table``)."""
    if vocab_size and vocab_size > 1:
        ln_v = f"ln V ≈ {math.log(vocab_size):.2f} for these {vocab_size} characters"
    else:
        ln_v = "ln V for V characters: what a model that knows nothing scores"
    states = ", ".join(s.upper() for s in RunState)
    bindings = tuple(bindings)
    bound = any(b.action == "next_layer" for b in bindings)
    layer_key = f"`{key_of(bindings, 'next_layer')}`" if bound else "the layer key"
    cell = config.cell if config is not None else "rnn"
    return (HELP.replace("ln V (@LN_V@)", ln_v).replace("@STATES@", states).replace("@KEYS@", key_table(bindings))
            .replace("@TENSORS@", TENSORS[cell]).replace("@GATES@", gates_text(config, layer_key)))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]

    def __init__(self, vocab_size: int | None = None, bindings: Iterable[Binding] = (), config=None):
        super().__init__()
        self.vocab_size = vocab_size
        self.bindings = tuple(bindings)  # the keys the table lists: the main screen's
        self.config = config  # the run's settings (cell, layers); None: those of the app's run

    def compose(self) -> ComposeResult:
        config = self.config if self.config is not None else self.app.client.info.config  # the app's run
        with VerticalScroll(id="help-body"):
            yield Markdown(help_text(self.vocab_size, self.bindings, config))

    def action_dismiss(self) -> None:
        self.dismiss(None)
