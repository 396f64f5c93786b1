"""Gradient statistics: per step cheap (O(parameters), no SVD), and the gradient's reach every few steps.

Per parameter and for the whole gradient: L2 norm before and after clipping, the largest |g|
before clipping, the fraction of elements the clip changed, the update-to-weight ratio ‖Δp‖/‖p‖,
and how often the clip fired over the last CLIP_WINDOW steps. Through time: the gradient's *reach*
(:class:`Reach`: the window's last loss alone, followed back lag by lag, the quantity that shows a
vanishing or exploding gradient), the all-losses ‖∂E/∂h_t‖ of every step (which each step's own
loss refills, so it stays flat however fast the backward signal decays), tanh saturation (fraction
of |h| > 0.99), and σmax(w) by one power iteration per step, warm-started from the last (w changes
little per step, so the estimate keeps up). The status words (:func:`health`) follow from these
by documented rules. Also: bounded histories for plotting long runs.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from functools import partial

import numpy as np

from . import parallel
from .model import FLAT_ORDER, PARAM_NAMES, SATURATION_LEVEL, CharRNN, StepDiagnostics, packed_pair

__all__ = ["SATURATION_LEVEL", "GradStats", "History", "Monitor", "ParamStats", "PreClip", "Reach", "causes", "health"]
#: Activations counted in parallel from this many on (below it the hand-over costs more than it saves).
PARALLEL_COUNT = 1 << 19


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


@dataclass(frozen=True)
class GradStats:
    """Every gradient figure of one training step."""

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
    summed over the batch's sequences; norms over the batch). ``factor`` is the geometric-mean factor
    per step back, ratios[T−1]^(1/(T−1)). ``lag`` is the first d with ratios[d] < REACH_LEVEL, or None
    when the gradient stays above it over the whole window ("beyond T"). ``to_h0`` is the ratio at h₀
    (lag T), the state the window started from. ``step`` is the step whose weights and batch it was
    measured on.
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
        """From log ‖∂E_T/∂h_{T−d}‖, d = 0 … T (:func:`rnntui.model.last_loss_back`)."""
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


def health(stats: GradStats | None, reach: Reach | None) -> list[str]:
    """Status words, each from a figure by a documented rule (README "Status words"):

    - VANISHING: the reach is shorter than half the window (lag < VANISHING_SHARE·T);
    - EXPLODING: going back the gradient grows (factor > 1) to ≥ EXPLODING_GROWTH × its start;
    - SATURATED: more than SATURATED_SHARE of the tanh units are saturated (a cause, shown beside).
    No word means OK. Shown beside colours, never instead.
    """
    words = []
    if reach is not None and reach.T > 1:
        if reach.lag is not None and reach.lag < VANISHING_SHARE * reach.T:
            words.append("VANISHING")
        elif reach.factor > 1 and np.nanmax(reach.ratios) >= EXPLODING_GROWTH:
            words.append("EXPLODING")
    if stats is not None and stats.saturation > SATURATED_SHARE:
        words.append("SATURATED")
    return words


def causes(stats: GradStats | None, reach: Reach | None) -> str:
    """What the figures point to behind a VANISHING or EXPLODING reach, in a few words ("" otherwise).

    Vanishing: most units saturated (> 50 % with 1 − h² < 0.02) → "saturated"; else σmax(w) < 1 →
    "σmax<1" (no step back can keep the gradient); else "(1−h²)·w" (the product of the two shrinks it).
    Exploding: "σmax>1" (w stretches it faster than 1 − h² damps it).
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


def _sq(a: np.ndarray) -> float:
    flat = a.reshape(-1)
    return float(np.dot(flat, flat))


def _squares(tensors: dict[str, np.ndarray]) -> dict[str, float]:
    """‖a‖² of each tensor, by name (of its contiguous segment of the flat vector when packed)."""
    if packed_pair(tensors) is None:
        return {k: _sq(tensors[k]) for k in PARAM_NAMES}
    return {k: float(np.dot(a, a)) for k, a in tensors.flat_segments.items()}


def _dots(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """a·b of each tensor pair, by name (over the contiguous segments when both are packed alike)."""
    if packed_pair(a, b) is None:
        return {k: float(np.vdot(a[k], b[k])) for k in PARAM_NAMES}
    return {k: float(np.dot(x, y)) for (k, x), y in zip(a.flat_segments.items(), b.flat_segments.values(),
                                                        strict=True)}


def _moments(p: dict[str, np.ndarray], d: dict[str, np.ndarray]) -> tuple[dict, dict, dict]:
    """‖d‖², ‖p‖² and p·d of each tensor, by name: one loop over the contiguous segments when both are packed
    alike (15 BLAS dots; per-call overhead is most of their cost, so no other pass is made)."""
    if packed_pair(p, d) is None:
        return _squares(d), _squares(p), _dots(p, d)
    dd, pp, pd = {}, {}, {}
    dot = np.dot
    for (k, x), y in zip(p.flat_segments.items(), d.flat_segments.values(), strict=True):
        dd[k], pp[k], pd[k] = float(dot(y, y)), float(dot(x, x)), float(dot(x, y))
    return dd, pp, pd


def _grad_figures(grads: dict[str, np.ndarray], count_above: float | None):
    """max |g|, ‖g‖² and the number of |g| > ``count_above`` (when given) of each tensor, by name."""
    if packed_pair(grads) is None:
        absg = {k: np.abs(g) for k, g in grads.items()}
        max_abs = {k: float(np.max(a)) for k, a in absg.items()}
        counts = {k: int(np.count_nonzero(a > count_above)) if count_above is not None and max_abs[k] > count_above
                  else 0 for k, a in absg.items()}
        return max_abs, {k: _sq(g) for k, g in grads.items()}, counts
    g, starts = grads.flat, grads.starts
    highs, lows = np.maximum.reduceat(g, starts).tolist(), np.minimum.reduceat(g, starts).tolist()
    max_abs = {k: max(hi, -lo) if hi == hi and lo == lo else math.nan  # NaN stays NaN
               for k, hi, lo in zip(FLAT_ORDER, highs, lows, strict=True)}
    counts = dict.fromkeys(FLAT_ORDER, 0)
    if count_above is not None and max(max_abs.values()) > count_above:
        # where |g| > c, then how many of those positions fall in each segment (few entries are clipped:
        # 4× faster than a reduceat over a boolean vector)
        where = np.flatnonzero(np.abs(g) > count_above)
        edges = np.searchsorted(where, np.append(starts, g.size)).tolist()
        above = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
        counts = {k: n if max_abs[k] > count_above else 0 for k, n in zip(FLAT_ORDER, above, strict=True)}
    return max_abs, _squares(grads), counts


def _count_saturated(h: np.ndarray) -> int:
    return int(np.count_nonzero(np.abs(h) > SATURATION_LEVEL))


def _saturation(hs: np.ndarray) -> float:
    """Fraction of |h| > SATURATION_LEVEL. A large batch split over threads (hs of shape (P, …)) is counted
    part by part at once, on the cores that computed it."""
    if not hs.size:
        return 0.0
    blocks = list(hs) if hs.ndim == 3 and hs.size >= PARALLEL_COUNT else [hs]
    return sum(parallel.run([partial(_count_saturated, h) for h in blocks])) / hs.size


class Monitor:
    """Computes :class:`GradStats` and :class:`Reach`; keeps between steps the power-iteration vector, the latest
    σmax estimate and which of the last CLIP_WINDOW steps the clip fired on (all in its state_dict)."""

    def __init__(self, hidden_size: int, *, seed: int = 0, power_iters: int = 1):
        rng = np.random.default_rng(seed + 7919)
        x = rng.standard_normal(hidden_size)
        self._x = x / np.linalg.norm(x)
        self.power_iters = power_iters
        self._sigma: float | None = None  # the latest σmax estimate (see _sigma_every_other)
        self._fired: deque[bool] = deque(maxlen=CLIP_WINDOW)  # did the clip change the gradient, step by step

    def state_dict(self) -> dict:
        """What carries over from step to step: ``x``, the power-iteration vector (H,) as float64 (a copy),
        ``sigma``, the latest σmax estimate, and ``fired``, whether the clip fired on each recent step."""
        return {"x": self._x.astype(np.float64), "sigma": self._sigma, "fired": list(self._fired)}

    def load_state_dict(self, state: dict) -> None:
        """Go on from a :meth:`state_dict` (one without ``sigma`` or ``fired``: computed afresh, an empty
        window); ValueError, and nothing changed, when it does not fit."""
        x = np.asarray(state["x"])
        if x.shape != self._x.shape or not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
            raise ValueError(f"the power-iteration vector has shape {x.shape} and type {x.dtype}, "
                             f"not {self._x.shape} finite floats")
        sigma = state.get("sigma")
        if sigma is not None and (isinstance(sigma, bool) or not isinstance(sigma, int | float)):
            raise ValueError(f"the σmax estimate is {sigma!r}, not a number")
        self._x = x.astype(np.float64)  # (sigma_max takes it to w's precision, as the run before did)
        self._sigma = None if sigma is None else float(sigma)
        self._fired.clear()
        self._fired.extend(bool(f) for f in state.get("fired", ()))

    def reach(self, step: int, w: np.ndarray, v: np.ndarray, diag: StepDiagnostics, targets: np.ndarray) -> Reach:
        """The gradient's reach in the pass ``diag`` describes (``w``, ``v``: the weights that pass ran on).

        One extra backward pass of the recurrence, for the window's last loss only (the trainer runs it
        every few steps; see Trainer.reach_every)."""
        return Reach.from_log_norms(step, diag.last_loss_back(w, v, targets))

    @staticmethod
    def reach_on(step: int, model: CharRNN, inputs, targets, h0, states: np.ndarray | None = None) -> Reach:
        """The same figure computed afresh on ``model``'s weights (a forward pass over the batch first, unless
        its ``states`` are given)."""
        return Reach.from_log_norms(step, model.last_loss_back(inputs, targets, h0, states))

    def pre_clip(self, grads: dict[str, np.ndarray], clip_mode: str, clip: float) -> PreClip:
        max_abs, sq, clipped = _grad_figures(grads, clip if clip_mode == "element" else None)
        norms = {}
        nonfinite = None
        for k in PARAM_NAMES:
            finite = math.isfinite(max_abs[k])
            if not finite and nonfinite is None:
                nonfinite = k
            norms[k] = math.sqrt(sq[k]) if finite else float("nan")
        return PreClip(norms, {k: max_abs[k] for k in PARAM_NAMES}, {k: clipped[k] for k in PARAM_NAMES}, nonfinite)

    def sigma_max(self, w: np.ndarray, iters: int | None = None) -> float:
        """Largest singular value of ``w`` by power iteration on wᵀw, warm-started (in w's precision)."""
        x = self._x if self._x.dtype == w.dtype else self._x.astype(w.dtype)
        s = 0.0
        for _ in range(iters or self.power_iters):
            x = np.dot(w.T, np.dot(w, x))
            n = math.sqrt(x @ x)
            if not math.isfinite(n) or n == 0:
                return n if not math.isfinite(n) else 0.0
            s = math.sqrt(n)
            x /= x.dtype.type(n)
        self._x = x  # in w's precision; the checkpoint keeps it as float64
        return float(s)

    def _sigma_every_other(self, step: int, w: np.ndarray) -> float:
        """σmax(w) by one power iteration on even steps (and the first); on odd steps the estimate of the step
        before, whose w differs by one update (Δw/w ~1e-3: below the 3 digits shown). Halves its cost."""
        if step % 2 == 0 or self._sigma is None:
            self._sigma = self.sigma_max(w)
        return self._sigma

    def measure(self, step: int, pre: PreClip, grads: dict[str, np.ndarray], deltas: dict[str, np.ndarray],
                params: dict[str, np.ndarray], diag: StepDiagnostics, clip_mode: str, clip: float,
                scale: float) -> GradStats:
        """Fold the figures of a finished step into :class:`GradStats`."""
        rows = []
        tot_pre = tot_post = tot_d = tot_p = 0.0
        tot_clipped = tot_n = 0
        delta_sq, param_sq, p_dot_d = _moments(params, deltas)
        post_sq = _squares(grads) if clip_mode == "element" and any(pre.clipped.values()) else None
        for k in PARAM_NAMES:
            n_pre, size = pre.norms[k], grads[k].size
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
        counted = diag.saturated
        sat = counted[1] / diag.hs.size if counted is not None and counted[0] is diag.hs else _saturation(diag.hs)
        return GradStats(step=step, params=tuple(rows), total=total, clip_mode=clip_mode, clip=float(clip),
                         dh_norms=dh, saturation=sat,
                         sigma_max=self._sigma_every_other(step, params["w"]),
                         clip_rate=sum(self._fired) / len(self._fired),
                         clip_window=len(self._fired))


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
