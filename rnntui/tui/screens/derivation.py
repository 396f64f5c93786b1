"""DerivationScreen: the BPTT equations with live numbers from the running model, and a verify action.

Everything shown is computed on a float64 copy of the weights and the last batch, handed over by
the run between two steps (``client.inspect()``), in a worker thread: training is never disturbed.
For the lecture's model (the tanh rnn, one layer) the screen is the lecture's eq-1 … eq-13 beside the
lines of ``lecture.py``; for any other model (lstm, gru, stacked layers) it is the cell's equations, one
layer at a time, beside the lines of the cell's readable reference (``rnntui/cells``).
"""

from __future__ import annotations

import inspect
import os

import numpy as np
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Static

from ... import cells, gradcheck
from ...cells import GATE_HIGH, GATE_LOW, TANH_LEVEL
from ...corpus import printable
from ...derivation import (
    CHECKS,
    TERMS,
    CellTerms,
    Inspection,
    StepTerms,
    cell_terms,
    gradient_from_last_step,
    source_lines,
    step_terms,
    tensor_name,
    verify_cell,
)
from ...monitor import REACH_LEVEL, health
from ..keys import key_hints, key_of
from ..widgets.layers import selected_layer
from ..widgets.text import fixed, num, sparkline
from ..widgets.timeflow import lag_axis, reach_bars, reach_summary, status_markup

GREEN_BELOW = gradcheck.THRESHOLD


def _norm(a) -> float:
    return float(np.linalg.norm(a))


def _pct(share: float) -> str:
    return f"{100 * share:.0f}%"


def vector_summary(name: str, a: np.ndarray, kind: str) -> str:
    """One line of figures of a step's vector: a gate ("sigmoid") its mean, range and the shares below GATE_LOW
    and above GATE_HIGH; a tanh its mean, range and share beyond ±TANH_LEVEL; any other its size and range."""
    a = np.asarray(a, np.float64)
    if kind == "sigmoid":
        return (f"{name}: mean {a.mean():.3f} · min {a.min():.3f} · max {a.max():.3f} · "
                f"{_pct(np.mean(a < GATE_LOW))} < {GATE_LOW:g} · {_pct(np.mean(a > GATE_HIGH))} > {GATE_HIGH:g}")
    if kind == "tanh":
        return (f"{name}: mean {a.mean():+.3f} · min {a.min():+.3f} · max {a.max():+.3f} · "
                f"{_pct(np.mean(np.abs(a) > TANH_LEVEL))} beyond ±{TANH_LEVEL:g}")
    return f"‖{name}‖ = {_norm(a):.4g} · min {a.min():+.4g} · max {a.max():+.4g}"


def activation_kind(maths: str) -> str:
    """What an equation's right-hand side applies last: "sigmoid" (σ(…)), "tanh" (tanh(…)), else ""."""
    rhs = maths.split("=", 1)[-1].strip()
    return "sigmoid" if rhs.startswith("σ(") else "tanh" if rhs.startswith("tanh(") else ""


class DerivationScreen(Screen):
    """The equations on weights frozen at one step; ←/→ pick the step, b/B the sequence, n the layer, v verifies,
    r refreshes."""

    #: The screen's keys; its line of keys and the sentences that name a key are made from them.
    BINDINGS = [
        Binding("escape,d", "app.pop_screen", "back"),
        Binding("left", "step(-1)", "t−1", group=Binding.Group("step")),
        Binding("right", "step(1)", "t+1", group=Binding.Group("step")),
        Binding("b", "sequence(1)", "seq", group=Binding.Group("sequence")),
        Binding("B,shift+b", "sequence(-1)", "seq", group=Binding.Group("sequence")),
        Binding("n", "layer", "layer"),
        Binding("v", "verify", "verify"),
        Binding("r", "refresh_weights", "refresh"),
    ]

    def __init__(self, client):
        super().__init__()
        self.client = client
        self.ins: Inspection | None = None
        self.t = -1
        self.b = 0
        self.shown_layer: int | None = None  # None: the layer the main screen shows (else the top one)
        self.sources = source_lines()
        self.note = ""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="deriv-body"):
            yield Static("[dim]fetching the weights from the run…[/]", id="deriv-head")
            yield Static(id="deriv-eqs")
            yield Static(self.verify_prompt("the frozen weights"), id="deriv-verify")
            yield Static(id="deriv-time")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.shown_layer = selected_layer(self.app)
        self.action_refresh_weights()

    # -- getting the weights -------------------------------------------------------
    def action_refresh_weights(self) -> None:
        self.fetch()

    @work(thread=True, exclusive=True, group="fetch")
    def fetch(self) -> None:
        try:
            ins = self.client.inspect().result(timeout=30)
        except Exception as e:  # noqa: BLE001 — shown, not raised
            self.app.call_from_thread(self.query_one("#deriv-head", Static).update,
                                      f"[$error]could not get the weights: {escape(str(e))}[/]")
            return
        self.app.call_from_thread(self._got, ins)

    def _got(self, ins: Inspection) -> None:
        self.ins = ins
        B, T = ins.inputs.shape
        self.b = min(self.b, B - 1)
        self.shown_layer = ins.layers - 1 if self.shown_layer is None else min(self.shown_layer, ins.layers - 1)
        self.render_terms()
        self.query_one("#deriv-verify", Static).update(self.verify_prompt("these weights"))

    @classmethod
    def verify_prompt(cls, weights: str) -> str:
        v = escape(key_of(cls.BINDINGS, "verify"))
        return (f"[b]verify[/] ({v}): every equation checked numerically (complex step) in float64 on a copy of "
                f"{weights} — press {v}")

    # -- navigation ----------------------------------------------------------------
    def action_step(self, delta: int) -> None:
        if self.ins is None:
            return
        T = self.ins.inputs.shape[1]
        self.t = (self.t % T + delta) % T
        self.render_terms()

    def action_sequence(self, delta: int) -> None:
        if self.ins is None:
            return
        self.b = (self.b + delta) % self.ins.inputs.shape[0]
        self.render_terms()

    def action_layer(self) -> None:
        if self.ins is None:
            return
        if self.ins.layers == 1:
            self.note = "one layer only: the layer key cycles the layers of a run with --layers 2 or more"
        else:
            self.shown_layer = (self.shown_layer + 1) % self.ins.layers
            self.note = ""
            self.query_one("#deriv-verify", Static).update(self.verify_prompt("these weights"))
        self.render_terms()

    # -- the equations ---------------------------------------------------------------
    def char(self, i: int) -> str:
        chars = self.client.info.vocab
        return "'" + escape(printable(chars[i])) + "'" if 0 <= i < len(chars) else str(i)

    def code(self, eq: str) -> str:
        line, code = self.sources.get(eq, (0, "?"))
        return f"[dim]lecture.py:{line}[/] [$accent]{escape(code)}[/]"

    def render_terms(self) -> None:
        if self.ins.lecture:
            self.render_lecture()
        else:
            self.render_cell()

    def head(self, where: str, t: int, T: int, x: int, y: int, loss_t: float) -> None:
        ins = self.ins
        B = ins.inputs.shape[0]
        note = f"\n[$warning]{escape(self.note)}[/]" if self.note else ""
        self.query_one("#deriv-head", Static).update(
            f"[b]Derivation[/]{where} · [$warning b]frozen at step {ins.step}[/]"
            f"{self.behind(self.client.latest(), ins)}"
            f" · sequence b={self.b + 1}/{B} · step t={t + 1}/{T}: input {self.char(x)} → target {self.char(y)} · "
            f"Eₜ = −log ŷₜ\\[y] = {loss_t:.3f}\n"
            f"[dim]{escape(key_hints(self.BINDINGS))} · values for one sequence "
            f"(the trainer averages gradients over the B sequences)[/]{note}")

    def render_lecture(self) -> None:
        ins = self.ins
        st = step_terms(ins, self.t, self.b, ins.sigma_max)  # every number from the same frozen weights
        self.t = st.t
        self.head("", st.t, st.T, st.x, st.y, st.loss_t)
        self.query_one("#deriv-eqs", Static).update("\n".join(self.equations(st)))
        self.render_time()

    def equations(self, st: StepTerms) -> list[str]:
        g = st.grads
        idx, jac = st.jacobian_top(5)
        jac_head = "      " + "".join(f"{self.char(j):>9}" for j in idx)
        jac_rows = [f"  {self.char(i):>6}" + "".join(f"{fixed(jac[r, c], 4):>9}" for c in range(len(idx)))
                    for r, i in enumerate(idx)]
        sat = float(np.mean(st.one_minus_h2 < 0.02))
        dh_norm = _norm(st.dh)
        lines = [
            "[b $primary]── forward[/]",
            "hₜ = tanh(u·xₜ + w·hₜ₋₁ + b_h)   ŷₜ = softmax(v·hₜ + b_y)   E = −Σₜ log ŷₜ\\[yₜ]",
            f"  shapes: u {self.shape('u')}, w {self.shape('w')}, v {self.shape('v')}, hₜ (H={len(st.h)},), "
            f"ŷₜ (V={len(st.y_hat)},)",
            "",
            "[b $primary]── eq-1[/]  softmax Jacobian ∂ŷᵢ/∂qⱼ = ŷᵢ(δᵢⱼ − ŷⱼ)  " + self.code("eq-1"),
            "  top-5 most likely characters at this step:",
            jac_head, *jac_rows,
            "  With E = −Σᵢ yᵢ log ŷᵢ:  ∂E/∂qⱼ = Σᵢ (−yᵢ/ŷᵢ)·ŷᵢ(δᵢⱼ − ŷⱼ) = −yⱼ + ŷⱼ·Σᵢ yᵢ = ŷⱼ − yⱼ,",
            "  because y is one-hot (Σᵢ yᵢ = 1): the Jacobian collapses to eq-3.",
            "",
            "[b $primary]── eq-3[/]  ∂E/∂qₜ = ŷₜ − yₜ  " + self.code("eq-3"),
            f"  largest entries: {self.top_dq(st.top_dq(4), st.y)}",
            f"  ‖ŷₜ − yₜ‖ = {_norm(st.dq):.4g}",
            "",
            "[b $primary]── eq-4/5[/]  ∂qₜ/∂v = hₜ;  ∂E/∂v = Σₜ (ŷₜ − yₜ)·hₜᵀ  (V×H)  " + self.code("eq-5"),
            f"  this step's term ‖(ŷₜ − yₜ)·hₜᵀ‖ = ‖ŷₜ − yₜ‖·‖hₜ‖ = {_norm(st.dq) * _norm(st.h):.4g};"
            f"  ‖∂E/∂v‖ over the sequence = {_norm(g['v']):.4g}",
            "",
            "[b $primary]── eq-6[/]  ∂qₜ/∂hₜ = v, so the output sends vᵀ(ŷₜ − yₜ) into hₜ  " + self.code("eq-6"),
            f"  ‖vᵀ(ŷₜ − yₜ)‖ = {_norm(st.dh_out):.4g};  with dhnext from later steps ‖∂E/∂hₜ‖ = {dh_norm:.4g}",
            "",
            "[b $primary]── eq-7[/]  ∂hₜ/∂zₜ = 1 − hₜ²  " + self.code("eq-7"),
            f"  min {st.one_minus_h2.min():.3f} · mean {st.one_minus_h2.mean():.3f} · max "
            f"{st.one_minus_h2.max():.3f};  {100 * sat:.0f}% of units below 0.02 (saturated: gradient ≈ 0)",
            f"  dhrawₜ = (1 − hₜ²) ⊙ ∂E/∂hₜ:  ‖dhrawₜ‖ = {_norm(st.dhraw):.4g}",
            "",
            "[b $primary]── eq-8/9[/]  ∂zₜ/∂u = xₜ;  ∂E/∂u = Σₜ dhrawₜ·xₜᵀ  " + self.code("eq-9"),
            f"  xₜ is the one-hot of {self.char(st.x)} (index {st.x}): only column {st.x} of u gets dhrawₜ "
            f"(‖·‖ {_norm(st.dhraw):.4g});  ‖∂E/∂u‖ = {_norm(g['u']):.4g}",
            f"  the lookup: {self.code('eq-8')}",
            "",
            "[b $primary]── eq-10/11[/]  ∂zₜ/∂w = hₜ₋₁;  ∂E/∂w = Σₜ dhrawₜ·hₜ₋₁ᵀ  " + self.code("eq-11"),
            f"  ‖hₜ₋₁‖ = {_norm(st.h_prev):.4g};  this step's term ‖dhrawₜ‖·‖hₜ₋₁‖ = "
            f"{_norm(st.dhraw) * _norm(st.h_prev):.4g};  ‖∂E/∂w‖ = {_norm(g['w']):.4g}",
            "",
            "[b $primary]── eq-12/13[/]  ∂zₜ/∂hₜ₋₁ = w;  ∂E/∂hₜ₋₁ = wᵀ·dhrawₜ (the dhnext)  " + self.code("eq-13"),
            f"  ‖wᵀ·dhrawₜ‖ = {_norm(st.dhnext):.4g}  vs ‖∂E/∂hₜ‖ = {dh_norm:.4g}:  ×"
            f"{_norm(st.dhnext) / dh_norm if dh_norm else float('nan'):.3g} per step back;  "
            f"σmax(w) = {num(st.sigma_max).strip()}",
        ]
        return lines

    def top_dq(self, entries: list[tuple[int, float, float]], y: int) -> str:
        return " · ".join(f"{self.char(i)}{' (target)' if i == y else ''} ŷ {p:.3f} → {d:+.3f}" for i, p, d in entries)

    def shape(self, name: str) -> str:
        return "×".join(map(str, self.ins.model.params[name].shape))

    @classmethod
    def behind(cls, snap, ins: Inspection) -> str:
        """`` (training is at step M: r refreshes)`` when the run has moved on since the freeze."""
        if snap is None or snap.step <= ins.step:  # (a snapshot may be a little older than the freeze)
            return ""
        r = escape(key_of(cls.BINDINGS, "refresh_weights"))
        return f" [dim](training is at step {snap.step}: {r} refreshes)[/]"

    def render_time(self) -> None:
        ins = self.ins
        B, T = ins.inputs.shape
        lines = ["", "[b $primary]── gradient through time[/]  the window's last loss alone, followed back "
                 "(eq-7 then eq-12/13 at every step)"]
        reach = ins.reach
        if reach is not None:
            lines += self.reach_lines(reach, B, T, "h")
            lines += [f"  {reach_summary(reach)} (first lag below {100 * REACH_LEVEL:.0f}%) · h₀ keeps "
                      f"{num(reach.to_h0).strip()} · σmax(w) {num(ins.sigma_max).strip()} · "
                      f"status {status_markup([w for w in health(None, reach)])}"]
        norms = gradient_from_last_step(ins, self.b)
        lines += self.alone_lines(norms, T, "h")
        lines += [
            "  Each step back multiplies by diag(1 − h_k²)·wᵀ, whose size is at most σmax(w)·max(1 − h_k²):",
            "  below 1 the gradient vanishes geometrically, above 1 it can explode.",
        ]
        self.query_one("#deriv-time", Static).update("\n".join(lines))

    @staticmethod
    def reach_lines(reach, B: int, T: int, state: str) -> list[str]:
        """The batch's reach of one state as the main screen's reach panel draws it."""
        bar = reach_bars(reach.ratios, max(8, min(2 * T, 60)))
        return [f"  all {B} sequences, as on the main screen's reach panel: ‖∂E_T/∂{state}_(T−d)‖ / "
                f"‖∂E_T/∂{state}_T‖, log, █ = 1 … ▁ = 1e-4, · below, ▲ above 1",
                f"  [$accent]{bar}[/]",
                f"  [dim]{lag_axis(T, len(bar))}[/]"]

    def alone_lines(self, norms: np.ndarray, T: int, state: str) -> list[str]:
        """Sequence b's ‖∂E_T/∂state_k‖, k = 0 … T (k = 0 the initial state), as a sparkline and a few values."""
        line = sparkline(norms[1:], max(8, min(T, 60)))  # log scale, the series' own min … max
        positive = norms[1:][norms[1:] > 0]
        lo, hi = (float(positive.min()), float(positive.max())) if positive.size else (0.0, 0.0)
        decay = norms[1] / norms[T] if norms[T] > 0 else float("nan")
        rows = "  ".join(f"k={k}:{num(norms[k], 6).strip()}" for k in (T, max(T - 1, 1), max(T // 2, 1), 1, 0))
        return [f"  sequence b={self.b + 1} alone, ‖∂E_T/∂{state}_k‖ (log, k = T on the right):",
                f"  [$accent]{line}[/]   {num(lo).strip()} … {num(hi).strip()}",
                f"  {rows}   ({state}₁ keeps {num(decay).strip()} of it)"]

    # -- any cell, one layer at a time ---------------------------------------------------
    def render_cell(self) -> None:
        ins = self.ins
        st = cell_terms(ins, self.t, self.b, self.shown_layer)
        self.t = st.t
        cell = ins.stack.cell
        where = f" · {cell.name}" + (f" · [b]layer {st.layer + 1} of {st.layers}[/]" if st.layers > 1 else "")
        self.head(where, st.t, st.T, st.x, st.y, st.loss_t)
        self.query_one("#deriv-eqs", Static).update("\n".join(self.cell_equations(st)))
        self.render_cell_time(st)

    def cell_code(self, eq: str) -> str:
        cell = self.ins.stack.cell
        line, code = cells.source_lines(cell)[eq]
        return f"[dim]{os.path.basename(inspect.getsourcefile(type(cell)))}:{line}[/] [$accent]{escape(code)}[/]"

    def cell_equations(self, st: CellTerms) -> list[str]:
        ins = self.ins
        stack = ins.stack
        cell = stack.cell
        H = stack.hidden_size
        mask = "" if st.layer == 0 or ins.masks is None else (
            f" ⊙ its dropout mask ({_pct(np.mean(ins.masks[st.layer - 1][st.t * st.B + st.b] != 0))} kept)")
        x_is = (f"the one-hot of {self.char(st.x)} (index {st.x})" if st.layer == 0
                else f"layer {st.layer}'s hₜ{mask}")
        shapes = ", ".join(f"{name} {'×'.join(map(str, np.shape(a)))}" for name, a in st.grads.items())
        lines = [f"[b $primary]── forward[/]  layer {st.layer + 1}'s input xₜ is {x_is};  {shapes}"]
        terms = TERMS[cell.name]
        for eq in cell.equations:
            if eq.id in terms:
                kind = activation_kind(eq.maths)
                key = terms[eq.id]
                lines += self.eq_lines(eq, [vector_summary(key + "ₜ", st.fwd[key], kind)])
        lines += ["", *self.output_lines(st), "", "[b $primary]── backward[/]"]
        for eq in cell.equations:
            if eq.id in CHECKS[cell.name]:
                lines += self.eq_lines(eq, [self.backward_values(st, eq.id, check, H) for check in
                                            CHECKS[cell.name][eq.id]])
        return lines

    def eq_lines(self, eq, values: list[str]) -> list[str]:
        return [f"[b]{eq.id}[/]  {escape(eq.maths)}", f"  {self.cell_code(eq.id)}",
                *(f"  {escape(v)}" for v in values)]

    def output_lines(self, st: CellTerms) -> list[str]:
        top = st.layer == st.layers - 1
        out = ["[b $primary]── output layer[/]  ŷₜ = softmax(v·hₜ + b_y) of the top layer;  ∂E/∂qₜ = ŷₜ − yₜ;  "
               "it sends vᵀ(ŷₜ − yₜ) into the top layer's hₜ  " + self.code("eq-3"),
               f"  largest entries: {self.top_dq(self.dq_entries(st), st.y)};  ‖ŷₜ − yₜ‖ = {_norm(st.dq):.4g}"]
        if top:
            out.append(f"  ∂E/∂hₜ from above = vᵀ(ŷₜ − yₜ):  ‖·‖ = {_norm(st.dh_above):.4g}")
        else:
            mask = " ⊙ the dropout mask" if self.ins.masks is not None else ""
            out.append(f"  ∂E/∂hₜ from above = layer {st.layer + 2}'s ∂E/∂xₜ{mask}:  ‖·‖ = {_norm(st.dh_above):.4g}")
        return out

    @staticmethod
    def dq_entries(st: CellTerms, k: int = 4) -> list[tuple[int, float, float]]:
        order = list(np.argsort(-np.abs(st.dq))[:k])
        if st.y not in order:
            order = [st.y] + order[: k - 1]
        return [(int(i), float(st.y_hat[i]), float(st.dq[i])) for i in order]

    def backward_values(self, st: CellTerms, eq_id: str, check, H: int) -> str:
        cell = self.ins.stack.cell
        if check.nudge == "param":
            g = np.asarray(st.grads[check.quantity])
            name = tensor_name(check.quantity, st.layer, st.layers)
            parts = ""
            if cell.G > 1:
                parts = " · per gate " + " ".join(f"{gate} {_norm(b):.3g}" for gate, b in
                                                  zip(cell.gates, np.split(g, cell.G), strict=True))
            return f"‖∂E/∂{name}‖ over the sequence = {_norm(g):.4g}{parts}"
        a = st.dx if check.quantity == "dx" else st.back[check.quantity]
        label = check.quantity
        if check.part is not None:
            a, label = a[check.part * H:(check.part + 1) * H], f"δa_{cell.gates[check.part]}"
        j = int(np.argmax(np.abs(a)))
        text = f"‖{label}‖ = {_norm(a):.4g} · largest {label}[{j}] = {a[j]:+.4g}"
        if check.nudge == "state_in":  # to the step before: how much of ∂E/∂state it carries back
            state = "dh" if check.name == "h" else "d" + check.name
            here = _norm(st.back[state])
            ratio = _norm(a) / here if here else float("nan")
            text += f" · ×{ratio:.3g} of ‖{state}ₜ‖ per step back"
            if cell.name == "lstm" and check.name == "c":
                text += f" (×fₜ alone: mean fₜ {np.mean(st.fwd['f']):.3f})"
        return text

    def render_cell_time(self, st: CellTerms) -> None:
        ins = self.ins
        cell = ins.stack.cell
        B, T = ins.inputs.shape
        lines = ["", f"[b $primary]── gradient through time[/]  layer {st.layer + 1}: the window's last loss alone, "
                 "followed back through every step and layer"]
        layer_reach = next((r for r in ins.reaches if r.layer == st.layer), None)
        batch = {"h": layer_reach.h, "c": layer_reach.c} if layer_reach is not None else (
            {"h": ins.reach} if st.layer == st.layers - 1 else {})
        for state in cell.state_names:
            reach = batch.get(state)
            if reach is not None:
                lines += [*self.reach_lines(reach, B, T, state), f"  {state}: {reach_summary(reach)}"]
        sigmas = {k: v for k, v in ins.sigmas.items() if k.split("[")[0] == tensor_name(cell.w_hh, st.layer, st.layers)}
        for state in cell.state_names:
            lines += self.alone_lines(st.reach[state], T, state)
        if sigmas:
            lines.append("  σmax of the recurrent blocks: " + " · ".join(f"{k} {num(v).strip()}"
                                                                       for k, v in sigmas.items()))
        lines += {
            "lstm": ["  Along c each step back multiplies by fₜ alone (lstm-21): no weight matrix, no squashing;",
                     "  with f ≈ 1 the gradient reaches far back. Through h it is W_hhᵀ·δa (lstm-20), like the rnn's."],
            "gru": ["  Each step back keeps ∂E/∂hₜ ⊙ zₜ directly (gru-18): with z ≈ 1 it passes back unchanged;",
                    "  z plays the forget gate's part. The rest goes through W_hhᵀ and the gates."],
            "rnn": ["  Each step back multiplies by diag(1 − h_k²)·wᵀ (eq-7, eq-13): below 1 the gradient vanishes",
                    "  geometrically, above 1 it can explode."],
        }[cell.name]
        self.query_one("#deriv-time", Static).update("\n".join(lines))

    # -- verify ----------------------------------------------------------------------
    def action_verify(self) -> None:
        if self.ins is None:
            return
        box = self.query_one("#deriv-verify", Static)
        what = "every tensor" if self.ins.lecture else f"every equation of layer {self.shown_layer + 1} at step t"
        box.update(f"[b]verify[/]: [$warning b]working…[/] numerical derivatives in float64 on the weights frozen at "
                   f"step {self.ins.step}, {what} (a few seconds)")
        box.scroll_visible(top=True)
        self.verify(self.ins, self.t, self.b, self.shown_layer)

    @work(thread=True, exclusive=True, group="verify")
    def verify(self, ins: Inspection, t: int, b: int, layer: int) -> None:
        if ins.lecture:
            results = gradcheck.check_model(ins.model, ins.inputs, ins.targets, ins.h0, entries=6, largest=True,
                                            t=t, b=b)
            where = "the largest entries of each tensor"
        else:
            results = verify_cell(ins, t, b, layer)
            where = (f"layer {layer + 1}, step t={t % ins.inputs.shape[1] + 1}, sequence b={b + 1}: the largest "
                     "entries of each quantity; the first row: every step's state by the forward lines against the "
                     "training pass, from the same state")
        self.app.call_from_thread(self._show_verify, results, where)

    def _show_verify(self, results: list[gradcheck.TensorCheck], where: str) -> None:
        eq_w = max(6, *(len(r.equation) for r in results))
        name_w = max(7, *(len(r.name) for r in results))
        lines = [f"[b $primary]── verify[/]  analytic (our BPTT) vs the {gradcheck.METHOD}, float64, {escape(where)}"]
        lines.append(f"  {'eq':{eq_w}} {'tensor':{name_w}} {'analytic':>12} {'numeric':>12} {'rel err':>9}")
        for r in results:
            ok = r.max_error < GREEN_BELOW
            style = "$success" if ok else "$error"
            lines.append(f"  {r.equation:{eq_w}} {escape(r.name):{name_w}} {r.analytic:12.6g} {r.numeric:12.6g} "
                         f"[{style}]{r.max_error:9.1e} {'PASS' if ok else 'FAIL'}[/]")
        passed = sum(r.max_error < GREEN_BELOW for r in results)
        verdict = ("[$success b]every equation passes[/]" if passed == len(results)
                   else f"[$error b]{len(results) - passed} of {len(results)} FAIL[/]")
        lines.append(f"  {verdict} (relative error below {GREEN_BELOW:g})")
        box = self.query_one("#deriv-verify", Static)
        box.update("\n".join(lines))
        self.call_after_refresh(box.scroll_visible, top=True)  # the results, in view
