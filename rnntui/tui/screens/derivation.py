"""DerivationScreen: the lecture's equations with live numbers from the running model, and a verify action.

Everything shown is computed on a float64 copy of the weights and the last batch, handed over by
the trainer between two steps (the ``Inspect`` command), in a worker thread: training is never
disturbed.
"""

from __future__ import annotations

from concurrent.futures import Future

import numpy as np
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Static

from ... import gradcheck
from ...corpus import printable
from ...derivation import Inspection, StepTerms, gradient_from_last_step, source_lines, step_terms
from ...monitor import REACH_LEVEL, health
from ...trainer import Inspect
from ..keys import key_hints, key_of
from ..widgets.text import fixed, num, sparkline
from ..widgets.timeflow import lag_axis, reach_bars, reach_summary, status_markup

GREEN_BELOW = gradcheck.THRESHOLD


def _norm(a) -> float:
    return float(np.linalg.norm(a))


class DerivationScreen(Screen):
    """eq-1 … eq-13 on weights frozen at one step; ←/→ pick the step, b/B the sequence, v verifies, r refreshes."""

    #: The screen's keys; its line of keys and the sentences that name a key are made from them.
    BINDINGS = [
        Binding("escape,d", "app.pop_screen", "back"),
        Binding("left", "step(-1)", "t−1", group=Binding.Group("step")),
        Binding("right", "step(1)", "t+1", group=Binding.Group("step")),
        Binding("b", "sequence(1)", "seq", group=Binding.Group("sequence")),
        Binding("B,shift+b", "sequence(-1)", "seq", group=Binding.Group("sequence")),
        Binding("v", "verify", "verify"),
        Binding("r", "refresh_weights", "refresh"),
    ]

    def __init__(self, trainer):
        super().__init__()
        self.trainer = trainer
        self.ins: Inspection | None = None
        self.t = -1
        self.b = 0
        self.sources = source_lines()

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="deriv-body"):
            yield Static("[dim]fetching the weights from the trainer…[/]", id="deriv-head")
            yield Static(id="deriv-eqs")
            yield Static(self.verify_prompt("the frozen weights"), id="deriv-verify")
            yield Static(id="deriv-time")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.action_refresh_weights()

    # -- getting the weights -------------------------------------------------------
    def action_refresh_weights(self) -> None:
        self.fetch()

    @work(thread=True, exclusive=True, group="fetch")
    def fetch(self) -> None:
        future: Future = Future()
        self.trainer.send(Inspect(future))
        try:
            ins = future.result(timeout=30)
        except Exception as e:  # noqa: BLE001 — shown, not raised
            self.app.call_from_thread(self.query_one("#deriv-head", Static).update,
                                      f"[$error]could not get the weights: {escape(str(e))}[/]")
            return
        self.app.call_from_thread(self._got, ins)

    def _got(self, ins: Inspection) -> None:
        self.ins = ins
        B, T = ins.inputs.shape
        self.b = min(self.b, B - 1)
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

    # -- the equations ---------------------------------------------------------------
    def char(self, i: int) -> str:
        chars = self.trainer.corpus.vocab.chars
        return "'" + escape(printable(chars[i])) + "'" if 0 <= i < len(chars) else str(i)

    def code(self, eq: str) -> str:
        line, code = self.sources.get(eq, (0, "?"))
        return f"[dim]lecture.py:{line}[/] [$accent]{escape(code)}[/]"

    def render_terms(self) -> None:
        ins = self.ins
        snap = self.trainer.latest
        st = step_terms(ins, self.t, self.b, ins.sigma_max)  # every number from the same frozen weights
        self.t = st.t
        B, T = ins.inputs.shape
        self.query_one("#deriv-head", Static).update(
            f"[b]Derivation[/] · [$warning b]frozen at step {ins.step}[/]{self.behind(snap, ins)} · "
            f"sequence b={st.b + 1}/{B} · "
            f"step t={st.t + 1}/{T}: input {self.char(st.x)} → target {self.char(st.y)} · "
            f"Eₜ = −log ŷₜ\\[y] = {st.loss_t:.3f}\n"
            f"[dim]{escape(key_hints(self.BINDINGS))} · values for one sequence "
            "(the trainer averages gradients over the B sequences)[/]")
        self.query_one("#deriv-eqs", Static).update("\n".join(self.equations(st)))
        self.render_time()

    def equations(self, st: StepTerms) -> list[str]:
        g = st.grads
        idx, jac = st.jacobian_top(5)
        jac_head = "      " + "".join(f"{self.char(j):>9}" for j in idx)
        jac_rows = [f"  {self.char(i):>6}" + "".join(f"{fixed(jac[r, c], 4):>9}" for c in range(len(idx)))
                    for r, i in enumerate(idx)]
        top = " · ".join(f"{self.char(i)}{' (target)' if i == st.y else ''} ŷ {p:.3f} → {d:+.3f}"
                         for i, p, d in st.top_dq(4))
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
            f"  largest entries: {top}",
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

    def shape(self, name: str) -> str:
        return "×".join(map(str, self.ins.model.params[name].shape))

    @classmethod
    def behind(cls, snap, ins: Inspection) -> str:
        """`` (training is at step M: r refreshes)`` when the trainer has moved on since the freeze."""
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
            width = max(8, min(2 * T, 60))
            bar = reach_bars(reach.ratios, width)
            lines += [
                f"  all {B} sequences, as on the main screen's reach panel: ‖∂E_T/∂h_(T−d)‖ / ‖∂E_T/∂h_T‖, "
                "log, █ = 1 … ▁ = 1e-4, · below, ▲ above 1",
                f"  [$accent]{bar}[/]",
                f"  [dim]{lag_axis(T, len(bar))}[/]",
                f"  {reach_summary(reach)} (first lag below {100 * REACH_LEVEL:.0f}%) · h₀ keeps "
                f"{num(reach.to_h0).strip()} · σmax(w) {num(ins.sigma_max).strip()} · "
                f"status {status_markup([w for w in health(None, reach)])}",
            ]
        norms = gradient_from_last_step(ins, self.b)
        line = sparkline(norms[1:], max(8, min(T, 60)))  # log scale, the series' own min … max
        positive = norms[1:][norms[1:] > 0]
        lo, hi = (float(positive.min()), float(positive.max())) if positive.size else (0.0, 0.0)
        decay = norms[1] / norms[T] if norms[T] > 0 else float("nan")
        rows = "  ".join(f"k={k}:{num(norms[k], 6).strip()}" for k in (T, max(T - 1, 1), max(T // 2, 1), 1, 0))
        lines += [
            f"  sequence b={self.b + 1} alone, ‖∂E_T/∂h_k‖ (log, k = T on the right):",
            f"  [$accent]{line}[/]   {num(lo).strip()} … {num(hi).strip()}",
            f"  {rows}   (h₁ keeps {num(decay).strip()} of it)",
            "  Each step back multiplies by diag(1 − h_k²)·wᵀ, whose size is at most σmax(w)·max(1 − h_k²):",
            "  below 1 the gradient vanishes geometrically, above 1 it can explode.",
        ]
        self.query_one("#deriv-time", Static).update("\n".join(lines))

    # -- verify ----------------------------------------------------------------------
    def action_verify(self) -> None:
        if self.ins is None:
            return
        box = self.query_one("#deriv-verify", Static)
        box.update(f"[b]verify[/]: [$warning b]working…[/] numerical derivatives in float64 on the weights frozen at "
                   f"step {self.ins.step}, every tensor (a few seconds)")
        box.scroll_visible(top=True)
        self.verify(self.ins, self.t, self.b)

    @work(thread=True, exclusive=True, group="verify")
    def verify(self, ins: Inspection, t: int, b: int) -> None:
        results = gradcheck.check_model(ins.model, ins.inputs, ins.targets, ins.h0, entries=6, largest=True,
                                        t=t, b=b)
        self.app.call_from_thread(self._show_verify, results)

    def _show_verify(self, results: list[gradcheck.TensorCheck]) -> None:
        lines = [f"[b $primary]── verify[/]  analytic (our BPTT) vs the {gradcheck.METHOD}, float64, "
                 "the largest entries of each tensor"]
        lines.append(f"  {'eq':6} {'tensor':7} {'analytic':>12} {'numeric':>12} {'rel err':>9}")
        for r in results:
            ok = r.max_error < GREEN_BELOW
            style = "$success" if ok else "$error"
            lines.append(f"  {r.equation:6} {r.name:7} {r.analytic:12.6g} {r.numeric:12.6g} "
                         f"[{style}]{r.max_error:9.1e} {'PASS' if ok else 'FAIL'}[/]")
        passed = sum(r.max_error < GREEN_BELOW for r in results)
        verdict = ("[$success b]every equation passes[/]" if passed == len(results)
                   else f"[$error b]{len(results) - passed} of {len(results)} FAIL[/]")
        lines.append(f"  {verdict} (relative error below {GREEN_BELOW:g})")
        box = self.query_one("#deriv-verify", Static)
        box.update("\n".join(lines))
        self.call_after_refresh(box.scroll_visible, top=True)  # the results, in view
