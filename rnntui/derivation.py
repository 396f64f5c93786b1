"""The lecture's derivation evaluated on a live model: every factor of eq-1 … eq-13 at one step.

The trainer hands over an :class:`Inspection` (float64 copies of the weights a step's pass ran on,
and its batch). :func:`step_terms` runs the lecture's loop (:mod:`rnntui.lecture`) for one sequence
of that batch and returns the value of each factor at time step t; :func:`gradient_from_last_step`
backpropagates the last step's loss alone, the picture of vanishing and exploding gradients;
:func:`source_lines` finds the line of ``lecture.py`` that computes each equation — the code that
produced the numbers shown beside it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from . import lecture
from .lecture import softmax_jacobian
from .model import PARAM_NAMES, CharRNN


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
    dhnext: np.ndarray  # eq-13: wᵀ·dhraw (H,), carried to the step before
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
    """Sequence b of the inspected batch as a batch of one: (params, inputs, targets, h0)."""
    params = {k: np.asarray(ins.model.params[k]) for k in PARAM_NAMES}
    return params, ins.inputs[b:b + 1], ins.targets[b:b + 1], ins.h0[:, b:b + 1]


def step_terms(ins: Inspection, t: int, b: int = 0, sigma_max: float = float("nan")) -> StepTerms:
    """Every factor of the derivation at step ``t`` of sequence ``b``, computed by the lecture's loop
    (:func:`rnntui.lecture.bptt`: the lines the screen shows)."""
    params, xs, ys, h0 = _sequence(ins, b)
    B, T = ins.inputs.shape
    t = int(t) % T
    fwd, back = lecture.bptt(params, xs, ys, h0, keep=True)
    at = back.steps[t]
    hs, ps = fwd.hs, fwd.ps
    if not np.isfinite(sigma_max):
        sigma_max = float(np.linalg.norm(params["w"], 2))
    y_hat = ps[t][:, 0]
    return StepTerms(t=t, b=int(b), T=T, B=B, x=int(xs[0, t]), y=int(ys[0, t]), y_hat=y_hat, h=hs[t][:, 0],
                     h_prev=hs[t - 1][:, 0], one_minus_h2=1 - hs[t][:, 0] ** 2,
                     loss_t=float(-np.log(y_hat[ys[0, t]])), grads=back.grads, sigma_max=sigma_max,
                     dq=at["dy"][:, 0], dh_out=(params["v"].T @ at["dy"])[:, 0], dh=at["dh"][:, 0],
                     dhraw=at["dhraw"][:, 0], dhnext=at["dhnext"][:, 0])


def gradient_from_last_step(ins: Inspection, b: int = 0) -> np.ndarray:
    """‖∂E_T/∂h_k‖ for k = 0 … T: the last step's loss alone, backpropagated to every earlier state.

    Each step back multiplies by diag(1 − h_k²)·wᵀ; the norms shrink (vanish) or grow (explode)
    by roughly that matrix's size per step. Index k = 0 is the initial state h₀.
    """
    params, xs, ys, h0 = _sequence(ins, b)
    return lecture.last_loss_back(params, lecture.forward(params, xs, ys, h0), ys)[0]


#: Where each equation is computed in rnntui/lecture.py: the text that marks its line.
SOURCE_MARKERS = {
    "eq-1": "# eq-1",
    "eq-3": "# eq-3:",
    "eq-5": "# eq-5:",
    "eq-6": "# eq-6:",
    "eq-7": "# eq-7:",
    "eq-8": "# eq-8:",
    "eq-9": "# eq-9:",
    "eq-10": "# eq-10/11:",
    "eq-11": "# eq-10/11:",
    "eq-12": "# eq-12/13:",
    "eq-13": "# eq-12/13:",
}


def source_lines() -> dict[str, tuple[int, str]]:
    """For each equation: (line number in lecture.py, the code of that line, its comment stripped)."""
    lines, _ = inspect.getsourcelines(lecture)
    found = {}
    for eq, marker in SOURCE_MARKERS.items():
        i = next(i for i, line in enumerate(lines) if marker in line)
        found[eq] = (i + 1, lines[i].split("  #")[0].strip())
    return found
