"""The derivation evaluated on a live model: every factor of the BPTT equations at one step, and their check.

The trainer hands over an :class:`Inspection` (float64 copies of the weights a step's pass ran on, its
batch, initial states and dropout masks). For the lecture's model (the tanh rnn, one layer)
:func:`step_terms` runs the lecture's loop (:mod:`rnntui.lecture`) for one sequence of that batch and
returns the value of each factor at time step t; :func:`gradient_from_last_step` backpropagates the last
step's loss alone, the picture of vanishing and exploding gradients; :func:`source_lines` finds the line
of ``lecture.py`` that computes each equation — the code that produced the numbers shown beside it.

For any cell and layer (lstm, gru, stacked rnn) :func:`cell_terms` runs the cell's readable reference
(``reference_step``, ``reference_bptt``: the lines of :func:`rnntui.cells.source_lines`) for one
sequence, and :func:`verify_cell` checks every equation of one layer at one step numerically: each
backward equation's quantity against the complex-step derivative of the sequence's loss with respect
to what it is the gradient of (:data:`CHECKS`), the forward equations by the states they give against
the training pass's (the cells' fast path). The dropout masks are the Inspection's, so the loss
differentiated is exactly the one trained on.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import cells, gradcheck, lecture, parallel
from .cells import Stack
from .cells.base import onehot_columns
from .lecture import softmax_jacobian
from .model import PARAM_NAMES, CharRNN, tensor_name


@dataclass(frozen=True)
class Inspection:
    """A consistent copy of the trainer's state between two steps (float64).

    ``states0``: the state each layer's pass started from, a tuple of (B, H) rows per layer (("h",) or
    ("h", "c")); ``h0`` the same as (H, B) columns for the lecture's model (rnn, one layer), else None.
    ``masks``: the dropout factors the pass applied to the inputs of layers 2 … N ((T·B, H) rows each),
    or None. ``sigmas``: σmax of every recurrent block of these weights, exact (SVD), named as the
    snapshot's; ``sigma_max`` the largest (σmax(w) for the rnn).
    """

    step: int
    model: CharRNN
    inputs: np.ndarray  # (B, T)
    targets: np.ndarray  # (B, T)
    h0: np.ndarray | None  # (H, B), the state the batch started from (rnn, one layer)
    sigma_max: float = float("nan")
    reach: object = None  # monitor.Reach of the top layer, these weights and this batch (the trainer fills it in)
    states0: tuple = ()
    masks: tuple | None = None
    sigmas: dict = field(default_factory=dict)
    reaches: tuple = ()  # monitor.LayerReach per layer, bottom first, when the trainer fills them in

    @classmethod
    def from_arrays(cls, step: int, model: CharRNN, inputs, targets, h0, masks=None) -> Inspection:
        """``h0``: (H, B) columns (rnn, one layer), or the initial states as the stack takes them (a list per
        layer of tuples of (B, H) rows); ``masks`` the pass's dropout masks (Stack.draw_masks' format)."""
        m = model.astype(np.float64)
        stack = m.stack
        if isinstance(h0, np.ndarray) and h0.ndim == 2:
            states0 = ((np.asarray(h0, np.float64).T.copy(),),)
        else:
            states0 = tuple(tuple(np.array(a, np.float64) for a in s) for s in h0)
        lecture_model = stack.cell.name == "rnn" and stack.layers == 1
        cols = states0[0][0].T.copy() if lecture_model else None
        masks = None if masks is None else tuple(np.array(a, np.float64) for a in masks)
        sigmas = {}
        for k, p in enumerate(m.layer_params()):
            for name, w in stack.cell.recurrent_matrices(p).items():
                tensor, _, gate = name.partition(".")
                key = tensor_name(tensor, k, stack.layers) + (f"[{gate}]" if gate else "")
                sigmas[key] = float(np.linalg.norm(w, 2))
        return cls(step, m, np.array(inputs), np.array(targets), cols, sigma_max=max(sigmas.values()),
                   states0=states0, masks=masks, sigmas=sigmas)

    @property
    def stack(self) -> Stack:
        return self.model.stack

    @property
    def layers(self) -> int:
        return self.stack.layers

    @property
    def lecture(self) -> bool:
        """Whether this is the lecture's model (the tanh rnn, one layer): the lecture's own derivation applies."""
        stack = self.stack
        return stack.cell.name == "rnn" and stack.layers == 1

    def layer_params(self) -> list[dict]:
        return self.model.layer_params()


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


# -- any cell, any layer: the cells' readable reference on one sequence --------------------------------------------


@dataclass(frozen=True)
class CellTerms:
    """Layer ``layer``'s terms at step ``t`` (0-based) of sequence ``b``, by the cell's reference, for that
    sequence alone (a batch of one: its own loss, not divided by B).

    ``fwd`` and ``back``: the reference's terms of that step by their names (vectors: (H,) or (I,)), e.g.
    lstm i, f, g, o, c, tanh_c, h … and dh, do, dc, di, df, dg, da, dh_next, dc_next. ``dx`` is ∂E/∂xₜ
    (I,) (to the layer below), ``dh_above`` ∂E/∂hₜ from above (the output layer's vᵀ(ŷₜ − yₜ) for the
    top layer, the layer above's ∂E/∂x ⊙ its dropout mask below it). ``grads``: the layer's gradients
    over the sequence's T steps. ``reach``: ‖∂E_T/∂state_k‖ of the layer for k = 0 … T (k = 0: the
    initial state), the last step's loss alone followed back, by state name ("h", and "c" for the lstm).
    """

    t: int
    b: int
    T: int
    B: int
    layer: int
    layers: int
    x: int  # the character input at step t (the first layer's xₜ is its one-hot)
    y: int  # the target at step t
    y_hat: np.ndarray  # ŷₜ (V,)
    dq: np.ndarray  # ŷₜ − yₜ (V,)
    loss_t: float
    loss: float  # the sequence's loss E (summed over its T steps)
    fwd: dict
    back: dict
    dx: np.ndarray
    dh_above: np.ndarray
    grads: dict
    reach: dict


class _Sequence:
    """Sequence b of an inspection as a batch of one, in the reference's convention (batch in columns)."""

    def __init__(self, ins: Inspection, b: int):
        if ins.model.threads != "blas":
            # its many small products, on BLAS's threads, would wait on a training process's cores (20× slower)
            parallel.single_threaded_blas()
        B, T = ins.inputs.shape
        self.stack, self.cell = ins.stack, ins.stack.cell
        self.params = [{k: np.asarray(a, np.float64) for k, a in p.items()} for p in ins.layer_params()]
        self.v = np.asarray(ins.model.params["v"], np.float64)
        self.by = np.asarray(ins.model.params["by"], np.float64).reshape(-1, 1)
        self.inputs, self.targets = ins.inputs[b:b + 1], ins.targets[b:b + 1]
        self.T, self.b = T, b
        self.state0 = [tuple(a[b:b + 1].T.copy() for a in s) for s in ins.states0]  # (H, 1) columns
        rows = np.arange(T) * B + b  # the sequence's rows of every step (time-major)
        self.masks = None if ins.masks is None else [np.asarray(m)[rows] for m in ins.masks]  # (T·1, H) each
        self._base = None

    def mask(self, k: int, t: int):
        """Layer k's input dropout factors at step t as a (H, 1) column, or 1."""
        return 1 if self.masks is None or k == 0 else self.masks[k - 1][t:t + 1].T

    def reference(self):
        """The reference forward and BPTT (per layer), the output layer's ŷ by step and ∂E/∂h from above."""
        fwds = self.stack.reference_forward(self.params, self.inputs, self.state0, self.masks)
        hs = {t: fwds[-1].states[t + 1][0] for t in range(self.T)}
        ps, loss = lecture.outputs({"v": self.v, "by": self.by}, hs, self.targets)
        dhs = []
        for t in range(self.T):
            dy = ps[t].copy()
            dy[self.targets[0, t], 0] -= 1  # eq-3, for the sequence alone
            dhs.append(self.v.T @ dy)  # eq-6: the output layer sends vᵀ(ŷ − y) into the top layer's h
        backs = self.stack.reference_bptt(self.params, fwds, dhs, self.masks)
        return fwds, backs, ps, float(np.real(loss)), dhs

    def _step_losses(self, outs: list, start: int) -> list:
        """−log ŷₜ[yₜ] of steps start … T−1 from the top layer's hₜ (``outs[t − start]``), by log-sum-exp."""
        return [-gradcheck.log_softmax(self.v @ h + self.by)[self.targets[0, t], 0] for t, h in enumerate(outs, start)]

    def _run(self, k0: int, start: int, nudge) -> tuple[list, list]:
        """The layers k0 … N−1 from step ``start`` on (what comes before as in :attr:`base`), with ``nudge``
        (see :meth:`loss`): per layer its states before each step from ``start`` (and the last), and its h."""
        k_n, t_n, kind, name, array = nudge if nudge is not None else (-1, -1, "", "", None)
        names = self.cell.state_names
        states_by_layer, outs_by_layer = [], []
        for k in range(k0, len(self.params)):
            p = self.params[k]
            here = k == k_n
            p_all = {**p, name: array} if here and kind == "param" else p
            state = self.base[0][k][start] if start else self.state0[k]
            states, outs = [], []
            for t in range(start, self.T):
                if k == 0:
                    x = onehot_columns(self.inputs[:, t], self.stack.input_size)
                else:
                    below = outs_by_layer[-1][t - start] if outs_by_layer else self.base[1][k - 1][t]
                    x = below * self.mask(k, t)
                at = here and t == t_n
                p_t = {**p, name: array} if at and kind == "step" else p_all
                if at and kind == "x":
                    x = x + array
                s_in = tuple(a + array if at and kind == "state_in" and n == name else a
                             for n, a in zip(names, state, strict=True))
                states.append(state)
                state, _ = self.cell.reference_step(p_t, x, s_in)
                if at and kind == "state_out":
                    state = tuple(a + array if n == name else a for n, a in zip(names, state, strict=True))
                outs.append(state[0])
            states.append(state)
            states_by_layer.append(states)
            outs_by_layer.append(outs)
        return states_by_layer, outs_by_layer

    @property
    def base(self) -> tuple[list, list, list]:
        """The unperturbed pass by the reference steps: per layer its states before each step (and the last)
        and its h by step, and the loss of each step."""
        if self._base is None:
            states, outs = self._run(0, 0, None)
            self._base = (states, outs, self._step_losses(outs[-1], 0))
        return self._base

    def loss(self, nudge=None) -> complex:
        """E of the sequence by the reference steps; ``nudge`` (layer, step, kind, name, array) changes one thing:
        kind "param" the tensor ``name`` (``array`` used at every step), "step" the same at step t only,
        "state_in" adds ``array`` to the state ``name`` step t starts from (for that step only), "state_out" to
        the one it ends in (for every use), "x" to the layer's input at step t. Only what the change reaches is
        computed again: the layers from its own up, from its step on."""
        if nudge is None:
            return sum(self.base[2])
        k0, t0, kind = nudge[0], nudge[1], nudge[2]
        start = 0 if kind == "param" else t0
        _, outs = self._run(k0, start, nudge)
        return sum(self.base[2][:start]) + sum(self._step_losses(outs[-1], start))

    def fast_steps(self, layer: int) -> list[tuple]:
        """Layer ``layer``'s state after each step by the training pass (the cells' fast path, float64), one step at
        a time from the reference's state before it and on its input: every step's forward lines compared on their
        own (a difference of rounding is not carried on, and grown, from step to step)."""
        states, outs = self.base[0][layer], self.base[1][layer - 1] if layer else None
        cache = cells.Cache()
        after = []
        for t in range(self.T):
            x = self.inputs[:, t] if layer == 0 else (outs[t] * self.mask(layer, t)).T  # (1,) index or (1, I) row
            _, last = self.cell.forward(self.params[layer], x, tuple(a.T for a in states[t]), cache)
            after.append(tuple(a[0] for a in last))
        return after


def cell_terms(ins: Inspection, t: int, b: int = 0, layer: int = -1) -> CellTerms:
    """Layer ``layer``'s terms (−1: the top) at step ``t`` of sequence ``b``, by the cell's reference lines."""
    seq = _Sequence(ins, b)
    B, T = ins.inputs.shape
    L = ins.layers
    t, layer = int(t) % T, int(layer) % L
    fwds, backs, ps, loss, dhs = seq.reference()
    # the last step's loss alone, followed back through every layer (the reach of sequence b)
    last = [np.zeros_like(d) for d in dhs]
    last[-1] = dhs[-1]
    alone = seq.stack.reference_bptt(seq.params, fwds, last, seq.masks)[layer]
    reach = {}
    for j, name in enumerate(seq.cell.state_names):
        key = "dh" if name == "h" else "d" + name
        reach[name] = np.array([np.linalg.norm(alone.dstate0[j])] +
                               [np.linalg.norm(alone.steps[s][key]) for s in range(T)])
    if layer == L - 1:
        above = dhs[t]
    else:
        above = backs[layer + 1].dxs[t] * seq.mask(layer + 1, t)
    y = int(seq.targets[0, t])
    y_hat = ps[t][:, 0]
    dq = y_hat.copy()
    dq[y] -= 1
    column = lambda d: {k: np.asarray(a)[:, 0] if np.ndim(a) == 2 else a for k, a in d.items()}  # noqa: E731
    return CellTerms(t=t, b=int(b), T=T, B=B, layer=layer, layers=L, x=int(seq.inputs[0, t]), y=y, y_hat=y_hat,
                     dq=dq, loss_t=float(-np.log(y_hat[y])), loss=loss, fwd=column(fwds[layer].steps[t]),
                     back=column(backs[layer].steps[t]), dx=backs[layer].dxs[t][:, 0], dh_above=above[:, 0],
                     grads=backs[layer].grads, reach=reach)


class Check(NamedTuple):
    """How one equation's quantity is checked against a complex-step derivative of the sequence's loss.

    ``quantity``: the reference's name of it (a term of the step's backward record, a gradient, or "dx"),
    ``part`` the gate block of it when it is a concatenation (lstm's δa). ``nudge``: what is perturbed —
    "param" a tensor at every step (the gradient over the sequence), "step" a tensor at step t only (a
    bias there: the gradient of its pre-activation, δa), "state_in" the state step t starts from (its
    recurrent path only), "state_out" the state step t ends in (every use: the total ∂E/∂state), "x" the
    layer's input at step t — ``name`` the tensor or state, ``block`` the gate block of a step's bias.
    ``factor`` (a function of the step's forward terms) is what the quantity is multiplied by on its way
    to what is perturbed: a gate's value by its σ' = g(1 − g), ∂E/∂cₜ by iₜ(1 − gₜ²) into δa_g; the
    numeric quantity is the derivative divided by it.
    """

    quantity: str
    nudge: str
    name: str
    block: int | None = None
    part: int | None = None
    factor: object = None


def _sigma_prime(key: str):
    return lambda f: f[key] * (1 - f[key])


def _tanh_prime(key: str):
    return lambda f: 1 - f[key] ** 2


#: Per cell, every backward equation's check; the forward equations (not listed) are checked by the states they give.
CHECKS: dict[str, dict[str, tuple[Check, ...]]] = {
    "rnn": {
        "dh": (Check("dh", "state_out", "h"),),
        "eq-7": (Check("dhraw", "step", "bh"),),
        "b_h": (Check("bh", "param", "bh"),),
        "eq-9": (Check("u", "param", "u"),),
        "eq-11": (Check("w", "param", "w"),),
        "eq-13": (Check("dhnext", "state_in", "h"),),
        "dx": (Check("dx", "x", "x"),),
    },
    "lstm": {
        "lstm-7": (Check("dh", "state_out", "h"),),
        "lstm-8": (Check("do", "step", "b_ih", 3, factor=_sigma_prime("o")),),
        "lstm-9": (Check("dc", "step", "b_ih", 2, factor=lambda f: f["i"] * (1 - f["g"] ** 2)),),
        "lstm-10": (Check("di", "step", "b_ih", 0, factor=_sigma_prime("i")),),
        "lstm-11": (Check("df", "step", "b_ih", 1, factor=_sigma_prime("f")),),
        "lstm-12": (Check("dg", "step", "b_ih", 2, factor=_tanh_prime("g")),),
        "lstm-13": (Check("da", "step", "b_ih", 0, part=0),),
        "lstm-14": (Check("da", "step", "b_ih", 1, part=1),),
        "lstm-15": (Check("da", "step", "b_ih", 2, part=2),),
        "lstm-16": (Check("da", "step", "b_ih", 3, part=3),),
        "lstm-17": (Check("w_ih", "param", "w_ih"),),
        "lstm-18": (Check("w_hh", "param", "w_hh"),),
        "lstm-19": (Check("b_ih", "param", "b_ih"), Check("b_hh", "param", "b_hh")),
        "lstm-20": (Check("dh_next", "state_in", "h"),),
        "lstm-21": (Check("dc_next", "state_in", "c"),),
        "lstm-22": (Check("dx", "x", "x"),),
    },
    "gru": {
        "gru-6": (Check("dh", "state_out", "h"),),
        "gru-7": (Check("dn", "step", "b_ih", 2, factor=_tanh_prime("n")),),
        "gru-8": (Check("dz", "step", "b_ih", 1, factor=_sigma_prime("z")),),
        "gru-9": (Check("da_n", "step", "b_ih", 2),),
        "gru-10": (Check("dhn", "step", "b_hh", 2),),
        "gru-11": (Check("dr", "step", "b_ih", 0, factor=_sigma_prime("r")),),
        "gru-12": (Check("da_r", "step", "b_ih", 0),),
        "gru-13": (Check("da_z", "step", "b_ih", 1),),
        "gru-14": (Check("w_ih", "param", "w_ih"),),
        "gru-15": (Check("w_hh", "param", "w_hh"),),
        "gru-16": (Check("b_ih", "param", "b_ih"),),
        "gru-17": (Check("b_hh", "param", "b_hh"),),
        "gru-18": (Check("dh_next", "state_in", "h"),),
        "gru-19": (Check("dx", "x", "x"),),
    },
}


#: Per cell, the forward equations and the term of the reference's step record each computes.
TERMS: dict[str, dict[str, str]] = {
    "rnn": {"eq-8": "h"},
    "lstm": {"lstm-1": "i", "lstm-2": "f", "lstm-3": "g", "lstm-4": "o", "lstm-5": "c", "lstm-6": "h"},
    "gru": {"gru-1": "r", "gru-2": "z", "gru-3": "hn", "gru-4": "n", "gru-5": "h"},
}


def forward_equations(cell) -> list[str]:
    """The ids of the cell's equations that compute the forward pass (checked by the loss they give)."""
    return [eq.id for eq in cell.equations if eq.id in TERMS[cell.name]]


def _analytic(terms: CellTerms, check: Check, H: int) -> np.ndarray:
    if check.nudge == "param":
        return np.asarray(terms.grads[check.quantity])
    a = terms.dx if check.quantity == "dx" else terms.back[check.quantity]
    return a if check.part is None else a[check.part * H:(check.part + 1) * H]


def _row(equation: str, name: str, formula: str, a: np.ndarray, n: np.ndarray, idx: list) -> gradcheck.TensorCheck:
    """One row of the check, in the gradient check's terms: the largest error (NaN the worst) and its entry."""
    if not len(idx):
        return gradcheck.TensorCheck(name, equation, formula, 0, math.nan, (), math.nan, math.nan)
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    err = np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), gradcheck.FLOOR)
    k = int(np.argmax(np.where(np.isnan(err), np.inf, err)))
    return gradcheck.TensorCheck(name, equation, formula, len(idx), float(err[k]), tuple(idx[k]), float(a[k]),
                                 float(n[k]))


def verify_cell(ins: Inspection, t: int, b: int = 0, layer: int = -1, *, entries: int = 6,
                step: float = gradcheck.STEP) -> list[gradcheck.TensorCheck]:
    """Every equation of layer ``layer`` at step ``t`` of sequence ``b``, checked in float64 on a copy.

    First row (equation ids of the forward lines joined): the layer's state after every step by the reference's
    forward lines against the training pass's (the cells' fast path), each from the same state before it. Then
    one row per backward equation (two for lstm-19: b_ih and b_hh): the reference's value at the ``entries``
    largest entries against the complex-step derivative of the loss (:data:`CHECKS` says of what). An entry
    whose ``factor`` is 0 cannot be divided back and is skipped.
    """
    seq = _Sequence(ins, b)
    cell = seq.cell
    terms = cell_terms(ins, t, b, layer)
    k, t = terms.layer, terms.t
    H = ins.stack.hidden_size
    maths = {eq.id: eq.maths for eq in cell.equations}
    fwd_ids = forward_equations(cell)
    fwd_label = fwd_ids[0] if len(fwd_ids) == 1 else f"{fwd_ids[0]}…{fwd_ids[-1].split('-')[-1]}"
    states = seq.base[0][k]
    ref = np.concatenate([a[:, 0] for t in range(seq.T) for a in states[t + 1]])
    fast = np.concatenate([a for state in seq.fast_steps(k) for a in state])
    idx = [(t, name, j) for t in range(seq.T) for name in cell.state_names for j in range(H)]
    rows = [_row(fwd_label, "state", "every step's state by the reference's forward lines vs the training pass, "
                 "from the same state before it", ref, fast, idx)]
    params = seq.params[k]
    for eq_id, checks in CHECKS[cell.name].items():
        for check in checks:
            a = _analytic(terms, check, H)
            if check.nudge in ("param", "step"):
                array = params[check.name].astype(np.complex128)
            else:
                shape = (len(a), 1)
                array = np.zeros(shape, np.complex128)
            factor = np.ones(a.shape) if check.factor is None else np.asarray(check.factor(terms.fwd))
            usable = np.abs(factor) > 0
            order = [i for i in np.argsort(-np.abs(a).ravel(), kind="stable") if usable.ravel()[i]][:entries]
            idx = [tuple(int(j) for j in np.unravel_index(i, a.shape)) for i in sorted(order)]
            if check.nudge == "param":
                where = idx
            elif check.nudge == "step":
                where = [((check.block or 0) * H + i[0],) for i in idx]
            else:
                where = [(i[0], 0) for i in idx]
            nudge = (k, t, check.nudge, check.name, array)
            numeric = gradcheck.complex_step(lambda nudge=nudge: seq.loss(nudge), array, where, step)
            numeric = numeric / np.array([factor[i] for i in idx]) if idx else numeric
            rows.append(_row(eq_id, check.quantity if check.part is None else f"δa_{cell.gates[check.part]}",
                             maths[eq_id], [a[i] for i in idx], numeric, idx))
    return rows
