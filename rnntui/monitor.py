"""Gradient statistics: per step cheap (O(parameters), no SVD), and the gradient's reach every few steps.

Per parameter tensor (and per gate block of the gated cells' tensors) and for the whole gradient: L2
norm before and after clipping, the largest |g| before clipping, the fraction of elements the clip
changed, the update-to-weight ratio ‖Δp‖/‖p‖, and how often the clip fired over the last CLIP_WINDOW
steps. Through time: the gradient's *reach* (:class:`Reach`: the window's last loss alone, followed back
lag by lag, the quantity that shows a vanishing or exploding gradient) of every layer's h and, for the
lstm, of its cell state c (:class:`LayerReach`), with the gates' saturation figures of the same pass;
the all-losses ‖∂E/∂h_t‖ of every step of the top layer (which each step's own loss refills, so it stays
flat however fast the backward signal decays), tanh saturation of the top layer's h (fraction of
|h| > 0.99), and σmax of every recurrent block (the rnn's w, each gate's block of w_hh) by one power
iteration every other step, warm-started from the last (the weights change little per step, so the
estimate keeps up). The status words (:func:`health`) follow from these by documented rules. Also:
bounded histories for plotting long runs.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .cells import Saturation
from .model import SATURATION_LEVEL, CharRNN, Packed, PassFigures, StepDiagnostics

__all__ = ["SATURATION_LEVEL", "GradStats", "History", "LayerReach", "Monitor", "ParamStats", "PassReach", "PreClip",
           "Reach", "causes", "exact_sigmas", "health"]


@dataclass(frozen=True, slots=True)
class ParamStats:
    """Gradient figures of one tensor (or, with name ``total``, of all of them)."""

    name: str
    norm_pre: float  # ‖g‖ before clipping
    norm_post: float  # ‖g‖ after clipping
    max_abs: float  # max |g| before clipping
    clip_frac: float  # fraction of elements the clip changed
    update_ratio: float  # ‖Δp‖ / ‖p‖ of the step just taken (the larger ‖p‖ of before and after)


@dataclass(frozen=True)
class PreClip:
    """What is measured before the clip changes the gradient in place."""

    norms: dict[str, float]
    max_abs: dict[str, float]
    clipped: dict[str, int]  # elements beyond ±c (element mode)
    nonfinite: str | None  # the first tensor holding NaN or Inf, if any
    blocks: dict[str, float] = field(default_factory=dict)  # ‖g‖ of every gate block ("w_hh[f]" …)


@dataclass(frozen=True)
class GradStats:
    """Every gradient figure of one training step.

    ``params``: one row per tensor, bottom layer first, then v and by; ``blocks``: the pre-clip gradient norm of
    every gate block of the gated cells' tensors (``w_ih[i]``, ``w_hh_l1[f]`` …; empty for the rnn);
    ``sigma_max``: the largest σmax of the recurrent blocks (the rnn's, one layer: σmax(w));
    ``saturation``: the share of saturated tanh units of the top layer's h.
    """

    step: int
    params: tuple[ParamStats, ...]
    total: ParamStats
    clip_mode: str
    clip: float
    dh_norms: np.ndarray  # ‖∂E/∂h_t‖ of the whole loss (all steps' losses) for t = 1 … T (index 0 is t = 1)
    saturation: float
    sigma_max: float
    clip_rate: float = 0.0  # share of the last CLIP_WINDOW steps (or fewer, early on) on which the clip fired
    clip_window: int = 0  # how many steps clip_rate counts
    blocks: dict = field(default_factory=dict)

    def param(self, name: str) -> ParamStats:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


#: The gradient's reach is the lag at which one loss's gradient falls below this share of its start.
REACH_LEVEL = 0.01
#: VANISHING: the reach is shorter than this share of the window (T), i.e. a loss's gradient is below
#: 1 % of its start before it has crossed half the window.
VANISHING_SHARE = 0.5
#: EXPLODING: going back, the gradient grows, and at some lag it is this many times its start.
EXPLODING_GROWTH = 10.0
#: SATURATED: more than this share of the tanh units has |h| > SATURATION_LEVEL (see README "Healthy ranges").
SATURATED_SHARE = 0.9
#: Clipping's firing rate is counted over this many recent steps.
CLIP_WINDOW = 100


@dataclass(frozen=True)
class Reach:
    """How far one loss's gradient reaches back through time.

    ``ratios[d]`` = ‖∂E_T/∂h_{T−d}‖ / ‖∂E_T/∂h_T‖ for lags d = 0 … T−1 (E_T: the window's last loss,
    summed over the batch's sequences; norms over the batch; for a layer's cell state, c in place of h).
    ``factor`` is the geometric-mean factor per step back, ratios[T−1]^(1/(T−1)). ``lag`` is the first d
    with ratios[d] < REACH_LEVEL, or None when the gradient stays above it over the whole window ("beyond
    T"). ``to_h0`` is the ratio at h₀ (lag T), the state the window started from. ``step`` is the step
    whose weights and batch it was measured on.
    """

    step: int
    ratios: np.ndarray
    factor: float
    lag: int | None
    to_h0: float

    @property
    def T(self) -> int:
        return len(self.ratios)

    @classmethod
    def from_log_norms(cls, step: int, logs: np.ndarray) -> Reach:
        """From log ‖∂E_T/∂h_{T−d}‖, d = 0 … T (:func:`rnntui.cells.reach_back`)."""
        logs = np.asarray(logs, dtype=np.float64)
        T = len(logs) - 1
        if not np.isfinite(logs[0]):  # no gradient at all (or a non-finite one): nothing to follow
            ratios = np.full(T, math.nan if not np.isneginf(logs[0]) else 0.0)
            return cls(step, ratios, math.nan, None, math.nan)
        with np.errstate(over="ignore", invalid="ignore"):
            rel = np.exp(logs - logs[0])
        ratios = rel[:T]
        below = np.flatnonzero(~(ratios >= REACH_LEVEL))  # NaN counts as gone
        lag = int(below[0]) if below.size else None
        if T > 1:
            last = logs[T - 1] - logs[0]
            factor = math.exp(last / (T - 1)) if math.isfinite(last) else (0.0 if last < 0 else math.nan)
        else:
            factor = math.nan
        return cls(step, ratios, factor, lag, float(rel[T]))


@dataclass(frozen=True)
class LayerReach:
    """The reach of one layer (0 = bottom): of its h, and for the lstm of its cell state c (None otherwise).

    The top layer's last loss followed back through time and down the layers to this one."""

    layer: int
    h: Reach
    c: Reach | None = None


@dataclass(frozen=True)
class PassReach:
    """What one pass shows of the gradient through time: every layer's :class:`LayerReach` (bottom first), the gate
    figures of every layer (``gates[k]``: :class:`~rnntui.cells.Saturation` per gate, as the cell names them) and
    the share of saturated tanh units of the top layer's h."""

    reaches: tuple[LayerReach, ...]
    gates: tuple[tuple[Saturation, ...], ...]
    saturation: float

    @property
    def reach(self) -> Reach:
        """The top layer's h: the figure the status words read."""
        return self.reaches[-1].h

    @classmethod
    def of(cls, step: int, figures: PassFigures) -> PassReach:
        reaches = tuple(LayerReach(k, Reach.from_log_norms(step, logs["h"]),
                                   Reach.from_log_norms(step, logs["c"]) if "c" in logs else None)
                        for k, logs in enumerate(figures.logs))
        return cls(reaches, tuple(figures.gates), float(figures.saturation))


def health(stats: GradStats | None, reach: Reach | None, c_reach: Reach | None = None) -> list[str]:
    """Status words, each from a figure by a documented rule (README "Status words"):

    - VANISHING: the reach is shorter than half the window (lag < VANISHING_SHARE·T); for the lstm, given
      ``c_reach`` (the cell state's), both are: a gradient kept in c reaches the early steps' gates (∂E/∂f,
      ∂E/∂i, ∂E/∂g are ∂E/∂c times their factors) however short h's reach is;
    - EXPLODING: going back the gradient (h's, or c's) grows (factor > 1) to ≥ EXPLODING_GROWTH × its start;
    - SATURATED: more than SATURATED_SHARE of the tanh units are saturated (a cause, shown beside).
    No word means OK. Shown beside colours, never instead.
    """
    words = []
    reaches = [r for r in (reach, c_reach) if r is not None and r.T > 1]
    if reaches:
        if all(r.lag is not None and r.lag < VANISHING_SHARE * r.T for r in reaches):
            words.append("VANISHING")
        elif any(r.factor > 1 and np.nanmax(r.ratios) >= EXPLODING_GROWTH for r in reaches):
            words.append("EXPLODING")
    if stats is not None and stats.saturation > SATURATED_SHARE:
        words.append("SATURATED")
    return words


def causes(stats: GradStats | None, reach: Reach | None) -> str:
    """What the figures point to behind a VANISHING or EXPLODING reach, in a few words ("" otherwise).

    Vanishing: most units saturated (> 50 % with 1 − h² < 0.02) → "saturated"; else σmax(w) < 1 →
    "σmax<1" (no step back can keep the gradient); else "(1−h²)·w" (the product of the two shrinks it).
    Exploding: "σmax>1" (w stretches it faster than 1 − h² damps it). σmax is the largest of the
    recurrent blocks'.
    """
    words = health(stats, reach)
    if stats is None:
        return ""
    if "VANISHING" in words:
        if stats.saturation > 0.5:
            return "saturated"
        return "σmax<1" if stats.sigma_max < 1 else "(1−h²)·w"
    if "EXPLODING" in words:
        return "σmax>1"
    return ""


def largest(values) -> float:
    """The largest of ``values``; +inf or NaN when one of them is (a non-finite figure is never hidden by a max)."""
    values = list(values)
    if any(v != v for v in values):
        return math.nan
    return max(values) if values else math.nan


def exact_sigmas(params: Packed) -> dict[str, float]:
    """σmax of every recurrent block of ``params``, by name, exactly (by SVD, in float64): for views of a few
    weights (a divergence's kept parameters, an inspection), not for every step."""
    out = {}
    for tensor, names in params.layout.recurrent:
        w = np.asarray(params[tensor], np.float64)
        H = w.shape[1]
        with np.errstate(all="ignore"):
            for name, block in zip(names, w.reshape(len(names), H, H), strict=True):
                out[name] = float(np.linalg.norm(block, 2)) if np.isfinite(block).all() else math.nan
    return out


def _squares(g: Packed) -> tuple[dict[str, float], dict[str, float]]:
    """‖a‖² of each tensor and of each gate block, by name: dots over the contiguous segments of the flat vector
    (a tensor with gate blocks: the sum of its blocks')."""
    flat, layout = g.flat, g.layout
    dot = np.dot
    blocks = {label: float(dot(flat[a:b], flat[a:b])) for label, _, a, b in layout.gate_blocks}
    sq = dict.fromkeys(layout.names, 0.0)
    blocked = set()
    for label, tensor, _, _ in layout.gate_blocks:
        sq[tensor] += blocks[label]
        blocked.add(tensor)
    for name, a, b in layout.bounds:
        if name not in blocked:
            sq[name] = float(dot(flat[a:b], flat[a:b]))
    return sq, blocks


def _moments(p: Packed, d: Packed) -> tuple[dict, dict, dict]:
    """‖d‖², ‖p‖² and p·d of each tensor, by name: one loop over the contiguous segments (per-call overhead is
    most of their cost, so no other pass is made)."""
    dd, pp, pd = {}, {}, {}
    dot = np.dot
    for (k, x), y in zip(p.flat_segments.items(), d.flat_segments.values(), strict=True):
        dd[k], pp[k], pd[k] = float(dot(y, y)), float(dot(x, x)), float(dot(x, y))
    return dd, pp, pd


def _grad_figures(grads: Packed, count_above: float | None, work: np.ndarray | None = None):
    """max |g|, ‖g‖² and the number of |g| > ``count_above`` (when given) of each tensor, by name, and the gate
    blocks' ‖g‖² (``work``: where |g| may go, a vector like ``grads.flat``)."""
    g, starts, names = grads.flat, grads.starts, grads.layout.names
    absg = np.abs(g, out=work)
    max_abs = dict(zip(names, np.maximum.reduceat(absg, starts).tolist(), strict=True))  # NaN stays NaN
    counts = dict.fromkeys(names, 0)
    if count_above is not None and max(max_abs.values()) > count_above:
        # where |g| > c, then how many of those positions fall in each segment (few entries are clipped:
        # 4× faster than a reduceat over a boolean vector)
        where = np.flatnonzero(absg > count_above)
        edges = np.searchsorted(where, np.append(starts, g.size)).tolist()
        above = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
        counts = {k: n if max_abs[k] > count_above else 0 for k, n in zip(names, above, strict=True)}
    sq, blocks = _squares(grads)
    return max_abs, sq, counts, blocks


class Monitor:
    """Computes :class:`GradStats` and :class:`PassReach`; keeps between steps the power-iteration vectors (one per
    recurrent block, ``names`` as the model's layout names them: ``Layout.sigma_names``), the latest σmax
    estimates and which of the last CLIP_WINDOW steps the clip fired on (all in its state_dict)."""

    def __init__(self, hidden_size: int, *, seed: int = 0, power_iters: int = 1, names: tuple[str, ...] = ("w",)):
        rng = np.random.default_rng(seed + 7919)
        self._names = tuple(names)
        x = rng.standard_normal((len(self._names), hidden_size))
        self._x = x / np.linalg.norm(x, axis=1, keepdims=True)
        self.power_iters = power_iters
        self._sigma: list[float] | None = None  # the latest σmax estimates, in block order (see _sigmas_every_other)
        self._fired: deque[bool] = deque(maxlen=CLIP_WINDOW)  # did the clip change the gradient, step by step
        self._work: np.ndarray | None = None  # pre_clip's |g|

    @property
    def sigmas(self) -> dict[str, float]:
        """The latest σmax estimate of every recurrent block, by name (empty before the first step)."""
        return dict(zip(self._names, self._sigma, strict=True)) if self._sigma is not None else {}

    def state_dict(self) -> dict:
        """What carries over from step to step: ``x``, the power-iteration vectors (blocks, H) as float64 (a copy),
        ``sigmas``, the latest σmax estimates in block order, and ``sigma`` the largest, and ``fired``, whether the
        clip fired on each recent step."""
        sig = self._sigma
        return {"x": self._x.astype(np.float64), "sigma": None if sig is None else largest(sig),
                "sigmas": None if sig is None else list(sig), "fired": list(self._fired)}

    def load_state_dict(self, state: dict) -> None:
        """Go on from a :meth:`state_dict` (one without ``sigmas`` or ``fired``: computed afresh, an empty window;
        one vector (H,) and one ``sigma`` for a model of one recurrent block, as version 1 checkpoints hold them);
        ValueError, and nothing changed, when it does not fit."""
        x = np.asarray(state["x"])
        if x.ndim == 1 and self._x.shape[0] == 1:
            x = x[None]
        if x.shape != self._x.shape or not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
            raise ValueError(f"the power-iteration vectors have shape {x.shape} and type {x.dtype}, "
                             f"not {self._x.shape} finite floats")
        sig = state.get("sigmas")
        if sig is None and state.get("sigma") is not None and len(self._x) == 1:
            sig = [state["sigma"]]
        if sig is not None:
            if not isinstance(sig, list | tuple) or len(sig) != len(self._x) or not all(
                    not isinstance(v, bool) and isinstance(v, int | float) for v in sig):
                raise ValueError(f"the σmax estimates are {sig!r}, not {len(self._x)} numbers")
            sig = [float(v) for v in sig]
        self._x = x.astype(np.float64)  # (each pass takes it to the weights' precision, as the run before did)
        self._sigma = sig
        self._fired.clear()
        self._fired.extend(bool(f) for f in state.get("fired", ()))

    def reach(self, step: int, v: np.ndarray, diag: StepDiagnostics) -> PassReach:
        """The gradient's reach through every layer in the pass ``diag`` describes, and its gate figures (``v``:
        the output weights that pass ran on; the cells kept their own).

        One extra backward pass of the recurrence, for the window's last loss only (the trainer runs it
        every few steps; see Trainer.reach_every)."""
        return PassReach.of(step, diag.figures(v))

    @staticmethod
    def reach_on(step: int, model: CharRNN, inputs, targets, h0, masks=None) -> PassReach:
        """The same figures computed afresh on ``model``'s weights (one forward pass over the batch first, with the
        dropout ``masks`` that batch's pass used)."""
        return PassReach.of(step, model.measure(inputs, targets, h0, masks))

    def pre_clip(self, grads: Packed, clip_mode: str, clip: float) -> PreClip:
        g = grads.flat
        if self._work is None or self._work.shape != g.shape or self._work.dtype != g.dtype:
            self._work = np.empty_like(g)  # (kept: a new vector each step costs its pages' faults each time)
        max_abs, sq, clipped, blocks = _grad_figures(grads, clip if clip_mode == "element" else None, self._work)
        norms = {}
        nonfinite = None
        for k in grads.layout.names:
            finite = math.isfinite(max_abs[k])
            if not finite and nonfinite is None:
                nonfinite = k
            norms[k] = math.sqrt(sq[k]) if finite else float("nan")
        blocks = {k: math.sqrt(v) if math.isfinite(v) else float("nan") for k, v in blocks.items()}
        return PreClip(norms, max_abs, clipped, nonfinite, blocks)

    def sigma_max(self, w: np.ndarray, iters: int | None = None) -> float:
        """Largest singular value of one matrix ``w`` (the first block's vector, warm-started)."""
        return self._power(w[None], 0, iters)[0]

    def _power(self, W3: np.ndarray, i: int, iters: int | None = None) -> list[float]:
        """σmax of the G matrices W3 (G, H, H) by power iteration on WᵀW from vectors i … i+G−1, in W's precision
        (one matrix at a time: two matrix-vector products each, fewer calls than a batched product at these sizes).
        A block whose vector becomes 0 gives 0, a non-finite one its norm (inf or NaN); its vector is then kept."""
        out = []
        dot = np.dot
        if self._x.dtype != W3.dtype:  # kept in the weights' precision (the checkpoint keeps it as float64)
            self._x = self._x.astype(W3.dtype)
        for g, w in enumerate(W3):
            x = self._x[i + g]
            s = 0.0
            for _ in range(iters or self.power_iters):
                z = dot(w.T, dot(w, x))  # WᵀW·x
                n = math.sqrt(float(dot(z, z)))
                if not math.isfinite(n) or n == 0:
                    s = n if not math.isfinite(n) else 0.0
                    break
                s = math.sqrt(n)
                x = z / z.dtype.type(n)
                self._x[i + g] = x
            out.append(s)
        return out

    def _all_sigmas(self, params: Packed, iters: int | None = None) -> list[float]:
        """σmax of every recurrent block of ``params`` in block order (one power-iteration step each,
        warm-started)."""
        out, i = [], 0
        for tensor, names in params.layout.recurrent:
            w = params[tensor]
            H = w.shape[1]
            out += self._power(w.reshape(len(names), H, H), i, iters)
            i += len(names)
        return out

    def sigmas_of(self, params: Packed, iters: int | None = None) -> dict[str, float]:
        """σmax of every recurrent block of ``params`` (one power-iteration step each, warm-started), by name."""
        return dict(zip(params.layout.sigma_names, self._all_sigmas(params, iters), strict=True))

    def _sigmas_every_other(self, step: int, params: Packed) -> float:
        """σmax of every recurrent block by one power iteration on even steps (and the first); on odd steps the
        estimates of the step before, whose weights differ by one update (Δw/w ~1e-3: below the 3 digits shown).
        Halves their cost. Returns the largest."""
        if step % 2 == 0 or self._sigma is None:
            self._sigma = self._all_sigmas(params)
        return largest(self._sigma)

    def measure(self, step: int, pre: PreClip, grads: Packed, deltas: Packed, params: Packed,
                diag: StepDiagnostics, clip_mode: str, clip: float, scale: float) -> GradStats:
        """Fold the figures of a finished step into :class:`GradStats`."""
        rows = []
        tot_pre = tot_post = tot_d = tot_p = 0.0
        tot_clipped = tot_n = 0
        delta_sq, param_sq, p_dot_d = _moments(params, deltas)
        post_sq = _squares(grads)[0] if clip_mode == "element" and any(pre.clipped.values()) else None
        for k, a, b in params.layout.bounds:
            n_pre, size = pre.norms[k], b - a
            if clip_mode == "element":
                n_post = math.sqrt(post_sq[k]) if pre.clipped[k] else n_pre
                frac = pre.clipped[k] / size
            elif clip_mode == "global":
                n_post = n_pre * scale
                frac = 1.0 if scale < 1.0 else 0.0
            else:
                n_post, frac = n_pre, 0.0
            d2, p2 = delta_sq[k], param_sq[k]
            # ‖Δp‖ against the larger of ‖p‖ after and before the step (‖p − Δp‖² = ‖p‖² − 2p·Δp + ‖Δp‖²),
            # so a step that lands a tensor on exactly 0 gives 1, not ∞
            ref = max(p2, p2 - 2 * p_dot_d[k] + d2)
            rows.append(ParamStats(k, n_pre, float(n_post), pre.max_abs[k], frac,
                                   math.sqrt(d2 / ref) if ref > 0 else 0.0))
            tot_pre += n_pre**2
            tot_post += n_post**2
            tot_d += d2
            tot_p += ref
            tot_clipped += round(frac * size)
            tot_n += size
        total = ParamStats("total", math.sqrt(tot_pre), math.sqrt(tot_post), max(pre.max_abs.values()),
                           tot_clipped / tot_n, math.sqrt(tot_d / tot_p) if tot_p > 0 else 0.0)
        dh = np.asarray(diag.dh_norms, dtype=np.float64)
        self._fired.append(total.clip_frac > 0)
        return GradStats(step=step, params=tuple(rows), total=total, clip_mode=clip_mode, clip=float(clip),
                         dh_norms=dh, saturation=float(diag.saturation),
                         sigma_max=self._sigmas_every_other(step, params),
                         clip_rate=sum(self._fired) / len(self._fired),
                         clip_window=len(self._fired), blocks=pre.blocks)


class History:
    """A series of (step, value) that keeps at most ``capacity`` points however long the run.

    When full, neighbouring points are merged pairwise (their mean) and from then on
    every point is the mean of twice as many steps, so the whole run stays visible.
    """

    def __init__(self, capacity: int = 2048):
        if capacity < 2 or capacity % 2:
            raise ValueError("capacity must be an even number >= 2")
        self.capacity = capacity
        self._steps = np.empty(capacity)
        self._vals = np.empty(capacity)
        self.n = 0
        self.stride = 1
        self._acc_step = self._acc_val = 0.0
        self._acc_n = 0

    def __len__(self) -> int:
        return self.n

    def append(self, step: float, value: float) -> None:
        if self.stride == 1 and self.n < self.capacity:  # not decimating yet: store as it comes
            self._steps[self.n] = step
            self._vals[self.n] = value
            self.n += 1
            return
        self._acc_step += step
        self._acc_val += value
        self._acc_n += 1
        if self._acc_n < self.stride:
            return
        if self.n == self.capacity:
            half = self.capacity // 2
            self._steps[:half] = self._steps.reshape(half, 2).mean(axis=1)
            self._vals[:half] = self._vals.reshape(half, 2).mean(axis=1)
            self.n = half
            self.stride *= 2
            if self._acc_n < self.stride:  # keep accumulating: every point covers `stride` values
                return
        self._steps[self.n] = self._acc_step / self._acc_n
        self._vals[self.n] = self._acc_val / self._acc_n
        self.n += 1
        self._acc_step = self._acc_val = 0.0
        self._acc_n = 0

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of (steps, values)."""
        return self._steps[: self.n].copy(), self._vals[: self.n].copy()

    def last(self) -> float | None:
        return float(self._vals[self.n - 1]) if self.n else None

    def state(self) -> dict:
        """The points (copies), the stride, and the next point's sums so far (``pending``: the sums of its
        steps and of its values, and how many; None when it has none)."""
        s, v = self.arrays()
        pending = (self._acc_step, self._acc_val, self._acc_n) if self._acc_n else None
        return {"steps": s, "values": v, "stride": self.stride, "pending": pending}

    def load(self, state: dict) -> None:
        s, v = np.asarray(state["steps"], float), np.asarray(state["values"], float)
        n = min(len(s), self.capacity)
        self._steps[:n], self._vals[:n] = s[-n:], v[-n:]
        self.n = n
        self.stride = int(state.get("stride", 1))
        step_sum, value_sum, count = state.get("pending") or (0.0, 0.0, 0)
        self._acc_step, self._acc_val, self._acc_n = float(step_sum), float(value_sum), int(count)
