"""The lecture's derivation evaluated on a live model: every factor of eq-1 … eq-13 at one step.

The trainer hands over an :class:`Inspection` (float64 copies of the weights and the batch it
last trained on). :func:`step_terms` runs a plain per-step BPTT for one sequence of that batch,
exactly the lecture's loop, and returns the value of each factor at time step t;
:func:`gradient_from_last_step` backpropagates the last step's loss alone, the picture of
vanishing and exploding gradients; :func:`source_lines` finds the line of ``model.py`` that
computes each equation.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

import numpy as np

from . import model as model_module
from .model import PARAM_NAMES, CharRNN, softmax_jacobian, softmax_rows


@dataclass(frozen=True)
class Inspection:
    """A consistent copy of the trainer's state between two steps (float64)."""

    step: int
    model: CharRNN
    inputs: np.ndarray  # (B, T)
    targets: np.ndarray  # (B, T)
    h0: np.ndarray  # (H, B), the state the batch started from
    sigma_max: float = float("nan")  # σmax(w) of these weights, exact (SVD)
    reach: object = None  # monitor.Reach of these weights and this batch (the trainer fills it in)

    @classmethod
    def from_arrays(cls, step: int, model: CharRNN, inputs, targets, h0) -> Inspection:
        m = model.astype(np.float64)
        return cls(step, m, np.array(inputs), np.array(targets), np.asarray(h0, np.float64).copy(),
                   sigma_max=float(np.linalg.norm(m.params["w"], 2)))


@dataclass(frozen=True)
class StepTerms:
    """The factors of the lecture's equations for sequence ``b`` at step ``t`` (0-based)."""

    t: int
    b: int
    T: int
    B: int
    x: int  # input index (eq-8: xₜ is its one-hot)
    y: int  # target index
    y_hat: np.ndarray  # ŷₜ (V,)
    dq: np.ndarray  # eq-3: ŷₜ − yₜ (V,)
    h: np.ndarray  # hₜ (H,)
    h_prev: np.ndarray  # hₜ₋₁ (H,), eq-10
    one_minus_h2: np.ndarray  # eq-7 (H,)
    dh_out: np.ndarray  # eq-6: vᵀ(ŷₜ − yₜ) (H,)
    dh: np.ndarray  # ∂E/∂hₜ = vᵀ(ŷₜ − yₜ) + dhnext (H,)
    dhraw: np.ndarray  # (1 − hₜ²) ⊙ ∂E/∂hₜ (H,)
    dh_prev: np.ndarray  # eq-13: wᵀ·dhraw (H,)
    loss_t: float  # −log ŷₜ[y]
    grads: dict  # the sequence's full gradients (summed over its T steps)
    sigma_max: float

    def top_dq(self, k: int = 5) -> list[tuple[int, float, float]]:
        """The k entries of ŷ − y largest in size: (index, ŷ, ŷ − y), the target always included."""
        order = list(np.argsort(-np.abs(self.dq))[:k])
        if self.y not in order:
            order = [self.y] + order[: k - 1]
        return [(int(i), float(self.y_hat[i]), float(self.dq[i])) for i in order]

    def jacobian_top(self, k: int = 5) -> tuple[list[int], np.ndarray]:
        """eq-1 restricted to the k most likely characters: (indices, k×k block of ∂ŷᵢ/∂qⱼ)."""
        idx = list(np.argsort(-self.y_hat)[:k])
        return idx, softmax_jacobian(self.y_hat)[np.ix_(idx, idx)]


def _sequence(ins: Inspection, b: int):
    m = ins.model
    return m, ins.inputs[b], ins.targets[b], ins.h0[:, b]


def forward_sequence(m: CharRNN, xs, h0):
    """The lecture's forward loop for one sequence: hs[t] (T+1, H) with hs[0] = h0, ps (T, V)."""
    u, w, v, bh, by = (m.params[k] for k in PARAM_NAMES)
    T = len(xs)
    hs = np.empty((T + 1, m.H))
    hs[0] = h0
    ps = np.empty((T, m.V))
    for t in range(T):
        hs[t + 1] = np.tanh(u[:, xs[t]] + w @ hs[t] + bh[:, 0])
        ps[t] = softmax_rows(v @ hs[t + 1] + by[:, 0])
    return hs, ps


def step_terms(ins: Inspection, t: int, b: int = 0, sigma_max: float = float("nan")) -> StepTerms:
    """Every factor of the derivation at step ``t`` of sequence ``b``, by the lecture's loop."""
    m, xs, ys, h0 = _sequence(ins, b)
    B, T = ins.inputs.shape
    t = int(t) % T
    w, v = m.params["w"], m.params["v"]
    hs, ps = forward_sequence(m, xs, h0)
    grads = {k: np.zeros_like(p) for k, p in m.params.items()}
    dhnext = np.zeros(m.H)
    saved = {}
    for s in range(T - 1, -1, -1):
        dy = ps[s].copy()
        dy[ys[s]] -= 1  # eq-3
        grads["v"] += np.outer(dy, hs[s + 1])  # eq-5
        grads["by"][:, 0] += dy
        dh_out = v.T @ dy  # eq-6
        dh = dh_out + dhnext
        dhraw = (1 - hs[s + 1] ** 2) * dh  # eq-7
        grads["bh"][:, 0] += dhraw
        grads["u"][:, xs[s]] += dhraw  # eq-8/9
        grads["w"] += np.outer(dhraw, hs[s])  # eq-10/11
        dhnext = w.T @ dhraw  # eq-12/13
        if s == t:
            saved = dict(dq=dy, dh_out=dh_out, dh=dh, dhraw=dhraw, dh_prev=dhnext)
    if not np.isfinite(sigma_max):
        sigma_max = float(np.linalg.norm(w, 2))
    return StepTerms(t=t, b=int(b), T=T, B=B, x=int(xs[t]), y=int(ys[t]), y_hat=ps[t], h=hs[t + 1],
                     h_prev=hs[t], one_minus_h2=1 - hs[t + 1] ** 2, loss_t=float(-np.log(ps[t][ys[t]])),
                     grads=grads, sigma_max=sigma_max, **saved)


def gradient_from_last_step(ins: Inspection, b: int = 0) -> np.ndarray:
    """‖∂E_T/∂h_k‖ for k = 0 … T: the last step's loss alone, backpropagated to every earlier state.

    Each step back multiplies by diag(1 − h_k²)·wᵀ; the norms shrink (vanish) or grow (explode)
    by roughly that matrix's size per step. Index k = 0 is the initial state h₀.
    """
    m, xs, ys, h0 = _sequence(ins, b)
    w, v = m.params["w"], m.params["v"]
    hs, ps = forward_sequence(m, xs, h0)
    T = len(xs)
    out = np.zeros(T + 1)
    dy = ps[T - 1].copy()
    dy[ys[T - 1]] -= 1
    dh = v.T @ dy
    for k in range(T, 0, -1):  # dh is ∂E_T/∂h_k
        out[k] = np.linalg.norm(dh)
        dh = w.T @ ((1 - hs[k] ** 2) * dh)
    out[0] = np.linalg.norm(dh)
    return out


#: Where each equation is computed in rnntui/model.py: a text that marks its line, and how many lines to show.
SOURCE_MARKERS = {
    "eq-1": ("eq-1:", 1),
    "eq-3": ("eq-3:", 2),
    "eq-5": ("eq-5:", 1),
    "eq-6": ("eq-6:", 1),
    "eq-7": ("eq-7:", 1),
    "eq-8": ("is column x_t of u", 1),
    "eq-9": ("eq-9:", 2),
    "eq-10": ("h_{t−1} for every step", 1),
    "eq-11": ("eq-11:", 1),
    "eq-12": ("eq-12", 1),
    "eq-13": ("eq-12/13", 1),
}


def _is_code(line: str) -> bool:
    s = line.strip()
    return bool(s) and not s.startswith(("#", '"""'))


def source_lines() -> dict[str, tuple[int, str]]:
    """For each equation: (line number in model.py, the code that computes it, comments stripped)."""
    lines, _ = inspect.getsourcelines(model_module)
    found = {}
    for eq, (marker, count) in SOURCE_MARKERS.items():
        i = next((i for i, line in enumerate(lines) if marker in line), None)
        if i is None:
            continue
        while i < len(lines) and not _is_code(lines[i]):  # a comment or docstring: the code below it
            i += 1
        code = []
        j = i
        while j < len(lines) and len(code) < count:
            if _is_code(lines[j]):
                code.append(re.sub(r"\s+#.*$", "", lines[j].strip()))
            j += 1
        found[eq] = (i + 1, "; ".join(code))
    return found
