"""Gradient clipping and update rules.

Clipping modes (applied in place to the gradient dict):
  ``element``  np.clip every element to ±c (the lecture's, c = 5)
  ``global``   rescale all gradients by c/‖g‖ when the global L2 norm ‖g‖ exceeds c
               (Pascanu, Mikolov & Bengio 2013)
  ``none``     leave the gradient as it is

Update rules: ``adagrad`` (the lecture's), ``sgd``, ``momentum``, ``rmsprop``, ``adam``.
``step`` returns the update Δp it applied to each parameter so that the monitor can
report ‖Δp‖/‖p‖. Switching rule mid-run starts the new rule with fresh state.

When parameters and gradients are :class:`~rnntui.model.Packed` (one flat vector each, as the
model's are), clipping and the update run once on the flat vectors instead of once per tensor:
the same arithmetic, element by element, in a handful of NumPy calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .config import CLIP_MODES, OPTIMIZERS
from .model import Packed, packed_pair


def _tensors(grads: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The flat vector of packed gradients, else every tensor."""
    flats = packed_pair(grads)
    return flats if flats is not None else list(grads.values())


def clip_grads(grads: dict[str, np.ndarray], mode: str, c: float) -> float:
    """Clip ``grads`` in place. Returns the global scale applied (1.0 when none was)."""
    if mode == "element":
        for g in _tensors(grads):
            np.clip(g, -c, c, out=g)
        return 1.0
    if mode == "global":
        tensors = _tensors(grads)
        total = np.sqrt(sum(float(np.vdot(g, g)) for g in tensors))
        if total > c and np.isfinite(total):
            scale = c / total
            for g in tensors:
                g *= g.dtype.type(scale)
            return scale
        return 1.0
    if mode == "none":
        return 1.0
    raise ValueError(f"unknown clip mode {mode!r}; known: {', '.join(CLIP_MODES)}")


def _like(params: dict[str, np.ndarray], fill: float | None) -> dict[str, np.ndarray]:
    """Arrays shaped like ``params`` (packed when they are), filled with ``fill`` or left empty."""
    if isinstance(params, Packed):
        return params.like(fill)
    return {k: (np.full_like(p, fill) if fill is not None else np.empty_like(p)) for k, p in params.items()}


class Optimizer(ABC):
    """Base: holds per-parameter state arrays and the learning rate."""

    name = ""
    #: Names of the per-parameter state arrays this rule keeps.
    slots: tuple[str, ...] = ()

    def __init__(self, params: dict[str, np.ndarray], lr: float):
        self.lr = float(lr)
        self.t = 0
        self.state = {s: _like(params, 0.0) for s in self.slots}
        self._delta = _like(params, None)

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Update ``params`` in place from ``grads``; return the update Δp of each (reused buffers)."""
        self.t += 1
        flats = packed_pair(params, grads, self._delta, *self.state.values())
        if flats is not None:  # everything in one flat vector: one pass of the rule over all of it
            p, g, d, *state = flats
            self._update(g, d, p.dtype.type, *state)
            p += d
            return self._delta
        for k, p in params.items():
            d = self._delta[k]
            self._update(grads[k], d, p.dtype.type, *(self.state[s][k] for s in self.slots))
            p += d
        return self._delta

    @abstractmethod
    def _update(self, g: np.ndarray, d: np.ndarray, f, *state: np.ndarray) -> None:
        """Write the update for gradient ``g`` into ``d`` (also usable as scratch), given the state arrays of
        ``slots`` in order; ``f`` is the parameters' scalar type."""

    def state_dict(self) -> dict:
        """``{"name", "t", "state": {slot: {parameter: array}}}``, the arrays copied (plain dicts, plain arrays)."""
        return {"name": self.name, "t": self.t,
                "state": {s: {k: a.copy() for k, a in per_param.items()} for s, per_param in self.state.items()}}

    def load_state_dict(self, data: dict) -> None:
        """Continue from ``data`` (a :meth:`state_dict` of the same rule over parameters of the same shapes);
        ValueError, and nothing changed, when it does not fit."""
        if data["name"] != self.name:
            raise ValueError(f"optimizer state is for {data['name']}, not {self.name}")
        t = data["t"]
        if isinstance(t, bool) or not isinstance(t, int | np.integer) or t < 0:
            raise ValueError(f"optimizer step count is {t!r}, not a count")
        for s in self.slots:
            given = data["state"].get(s, {})
            if set(given) != set(self.state[s]):
                raise ValueError(f"optimizer state {s} holds {sorted(given)}, not {sorted(self.state[s])}")
            for k, a in self.state[s].items():
                b = np.asarray(given[k])
                if b.shape != a.shape or not np.issubdtype(b.dtype, np.floating) or not np.isfinite(b).all():
                    raise ValueError(f"optimizer state {s}.{k} has shape {b.shape} and type {b.dtype}, "
                                     f"not {a.shape} finite floats")
        self.t = int(t)
        for s in self.slots:
            for k, a in self.state[s].items():
                a[...] = data["state"][s][k]


class SGD(Optimizer):
    """p −= lr·g"""

    name = "sgd"

    def _update(self, g, d, f):
        np.multiply(g, f(-self.lr), out=d)


class Momentum(Optimizer):
    """m = μ·m + g;  p −= lr·m  (μ = 0.9)"""

    name = "momentum"
    slots = ("m",)
    mu = 0.9

    def _update(self, g, d, f, m):
        m *= f(self.mu)
        m += g
        np.multiply(m, f(-self.lr), out=d)


class Adagrad(Optimizer):
    """The lecture's rule: mem += g²;  p −= lr·g/√(mem + 1e−8)"""

    name = "adagrad"
    slots = ("mem",)

    def _update(self, g, d, f, mem):
        mem += np.multiply(g, g, out=d)
        np.add(mem, f(1e-8), out=d)
        np.sqrt(d, out=d)
        np.divide(g, d, out=d)
        d *= f(-self.lr)


class RMSProp(Optimizer):
    """s = ρ·s + (1−ρ)·g²;  p −= lr·g/(√s + 1e−8)  (ρ = 0.99)"""

    name = "rmsprop"
    slots = ("s",)
    rho = 0.99

    def _update(self, g, d, f, s):
        s *= f(self.rho)
        np.multiply(g, g, out=d)
        s += np.multiply(f(1 - self.rho), d, out=d)
        np.sqrt(s, out=d)
        d += f(1e-8)
        np.divide(g, d, out=d)
        d *= f(-self.lr)


class Adam(Optimizer):
    """m = β1·m + (1−β1)·g;  s = β2·s + (1−β2)·g²;  p −= lr·m̂/(√ŝ + 1e−8)  (β1 = 0.9, β2 = 0.999)"""

    name = "adam"
    slots = ("m", "s")
    b1, b2 = 0.9, 0.999

    def _update(self, g, d, f, m, s):
        m *= f(self.b1)
        m += np.multiply(f(1 - self.b1), g, out=d)
        s *= f(self.b2)
        np.multiply(g, g, out=d)
        s += np.multiply(f(1 - self.b2), d, out=d)
        # bias corrections folded into the step size and epsilon
        c1 = 1 - self.b1 ** self.t
        c2 = 1 - self.b2 ** self.t
        np.sqrt(s, out=d)
        d += f(1e-8 * np.sqrt(c2))
        np.divide(m, d, out=d)
        d *= f(-self.lr * np.sqrt(c2) / c1)


_RULES = {cls.name: cls for cls in (SGD, Momentum, Adagrad, RMSProp, Adam)}
assert set(_RULES) == set(OPTIMIZERS)


def make_optimizer(name: str, params: dict[str, np.ndarray], lr: float) -> Optimizer:
    try:
        cls = _RULES[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}") from None
    return cls(params, lr)
