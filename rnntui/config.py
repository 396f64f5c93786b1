"""Training configuration: every setting, its default, and its validation.

One place decides what a valid value is, so the CLI, the trainer's control
channel and the TUI's hyperparameter form all refuse the same things with the
same one-line message.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

OPTIMIZERS = ("adam", "adagrad", "rmsprop", "momentum", "sgd")
CLIP_MODES = ("global", "element", "none")
DTYPES = ("float32", "float64")
INITS = ("scaled", "lecture")
#: The recurrent cells (rnntui.cells): the lecture's tanh RNN, PyTorch's LSTM and GRU.
CELLS = ("rnn", "lstm", "gru")
#: How many layers a model may stack.
MAX_LAYERS = 4

#: The lecture's recipe: Adagrad lr 0.1, element-wise clip to ±5, N(0, 0.01²) init.
LECTURE_SETTINGS = {"optimizer": "adagrad", "lr": 0.1, "clip_mode": "element", "clip": 5.0, "init": "lecture"}


class ConfigError(ValueError):
    """A setting has a value we cannot train with; the message names it and the fix."""


def _finite(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    return value


def _positive_float(name: str, value) -> float:
    value = _finite(name, value)
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {value:g}")
    return value


def _int_range(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        value = int(value)
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _choice(name: str, value, choices: tuple[str, ...]) -> str:
    value = str(value).strip().lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


#: Validators for the settings that may change while training runs.
#: Each takes the raw value (a number or the text a user typed) and returns the clean value.
HYPER_VALIDATORS = {
    "lr": lambda v: _lr(v),
    "optimizer": lambda v: _choice("optimizer", v, OPTIMIZERS),
    "clip_mode": lambda v: _choice("clip mode", v, CLIP_MODES),
    "clip": lambda v: _positive_float("clip threshold", v),
    "temperature": lambda v: _temperature(v),
    "sample_length": lambda v: _int_range("sample length", v, 1, 10_000),
    "sample_every": lambda v: _int_range("sample interval", v, 0, 10_000_000),
    "val_every": lambda v: _int_range("validation interval", v, 0, 10_000_000),
}


def _lr(value) -> float:
    value = _positive_float("learning rate", value)
    if value > 1e3:
        raise ConfigError(f"learning rate must be at most 1000, got {value:g}")
    return value


def _temperature(value) -> float:
    value = _finite("temperature", value)
    if value < 0 or value > 100:
        raise ConfigError(f"temperature must be between 0 (argmax) and 100, got {value:g}")
    return value


@dataclass(frozen=True)
class HyperParams:
    """The settings a user may change between steps while training runs."""

    lr: float = 5e-3
    optimizer: str = "adam"
    clip_mode: str = "global"
    clip: float = 30.0  # global ‖g‖: fires on spikes, not on every step (README "Clipping")
    temperature: float = 0.8
    sample_length: int = 200
    sample_every: int = 100
    val_every: int = 100

    def validated(self) -> HyperParams:
        clean = {f.name: HYPER_VALIDATORS[f.name](getattr(self, f.name)) for f in dataclasses.fields(self)}
        return HyperParams(**clean)

    def replace(self, **changes) -> HyperParams:
        """A copy with ``changes`` applied, each validated; unknown names are refused."""
        clean = {}
        for name, value in changes.items():
            if name not in HYPER_VALIDATORS:
                raise ConfigError(f"unknown setting {name!r}; known: {', '.join(HYPER_VALIDATORS)}")
            clean[name] = HYPER_VALIDATORS[name](value)
        return dataclasses.replace(self, **clean)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run. ``hyper`` may change while it runs; the rest may not."""

    hidden_size: int = 128
    seq_length: int = 25
    batch_size: int = 32
    dtype: str = "float32"
    seed: int = 0
    init: str = "scaled"
    cell: str = "rnn"
    layers: int = 1
    dropout: float = 0.0  # between layers, on the non-recurrent connections (while training)
    forget_bias: float | None = 1.0  # the lstm's initial forget gate bias b_if + b_hf (None: drawn as PyTorch does)
    val_fraction: float = 0.1
    val_chars: int = 20_000
    hyper: HyperParams = field(default_factory=HyperParams)

    def validated(self) -> TrainConfig:
        val_fraction = _finite("val fraction", self.val_fraction)
        if not 0 <= val_fraction < 0.9:
            raise ConfigError(f"val fraction must be at least 0 and below 0.9, got {val_fraction:g}")
        layers = _int_range("layers", self.layers, 1, MAX_LAYERS)
        dropout = _finite("dropout", self.dropout)
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be at least 0 and below 1, got {dropout:g}")
        forget_bias = None if self.forget_bias is None else _finite("forget bias", self.forget_bias)
        if dropout > 0 and layers == 1:
            raise ConfigError(f"dropout {dropout:g} acts between layers and there is one; give layers 2 or more, "
                              "or dropout 0")
        return TrainConfig(
            hidden_size=_int_range("hidden size", self.hidden_size, 1, 8192),
            seq_length=_int_range("seq length", self.seq_length, 1, 100_000),
            batch_size=_int_range("batch size", self.batch_size, 1, 100_000),
            dtype=_choice("dtype", self.dtype, DTYPES),
            seed=_int_range("seed", self.seed, 0, 2**32 - 1),
            init=_choice("init", self.init, INITS),
            cell=_choice("cell", self.cell, CELLS),
            layers=layers,
            dropout=dropout,
            forget_bias=forget_bias,
            val_fraction=val_fraction,
            val_chars=_int_range("val chars", self.val_chars, 1, 10**9),
            hyper=self.hyper.validated(),
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        hyper = HyperParams(**data.pop("hyper", {}))
        return cls(**data, hyper=hyper)
