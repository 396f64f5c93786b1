"""A trainer's whole state as one value: what a checkpoint holds and what the training process hands over.

Each part owns its piece, as plain numbers, lists and arrays (in the manner of nanoGPT's checkpoint
dict): the optimizer's ``state_dict()``, the monitor's, the batch stream's ``state()``, each history's
``state()``. :meth:`rnntui.trainer.Trainer.state_dict` puts them together and
:meth:`~rnntui.trainer.Trainer.load_state_dict` hands them back to their parts;
:mod:`rnntui.checkpoint` writes and reads a :class:`TrainerState` and knows nothing of the trainer.

This module imports only the settings, so that it sits below the model, the monitor and the optimizer:
the checkpoint format depends on it without depending on any of them. The change log's and the
samples' entries are defined here for the same reason (:mod:`rnntui.trainer` re-exports them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from .config import HyperParams, TrainConfig

# -- the change log and the samples -------------------------------------------------------------


class ChangeKind(StrEnum):
    """What a :class:`Change` reports; views decide by it, never by the change's wording."""

    STARTED = "started"
    RESUMED = "resumed"
    PAUSED = "paused"
    SET = "set"  # a setting changed (its text: "lr 0.002 → 0.004, …")
    REFUSED = "refused"  # a setting refused (invalid); nothing changed
    RECOVERED = "recovered"  # resumed after a divergence: fresh hidden and optimizer state
    SAVED = "saved"
    SAVE_FAILED = "save_failed"
    METRICS_FAILED = "metrics_failed"  # the --metrics file cannot be written any more
    DIVERGED = "diverged"
    CRASHED = "crashed"
    FINISHED = "finished"
    NOTE = "note"  # anything else, and an entry of an older checkpoint that recorded no kind

    @classmethod
    def of(cls, value) -> ChangeKind:
        """``value`` as a kind; a missing or unknown one (a checkpoint from before kinds, or from a newer
        version) is a plain note: nothing is inferred from a change's text."""
        try:
            return cls(value)
        except ValueError:
            return cls.NOTE


#: The kinds that report something that went wrong, rather than confirm what was asked.
ALERT_KINDS = frozenset({ChangeKind.REFUSED, ChangeKind.SAVE_FAILED, ChangeKind.METRICS_FAILED,
                         ChangeKind.DIVERGED, ChangeKind.CRASHED})


@dataclass(frozen=True)
class Sample:
    step: int
    temperature: float
    text: str


@dataclass(frozen=True)
class Change:
    """One entry of the change log: at ``step``, what happened (``kind``) and its words for a person (``text``).

    Checkpoints keep changes as dicts; one without ``kind`` (or with an unknown one) reads back as a note.
    """

    step: int
    kind: ChangeKind = ChangeKind.NOTE
    text: str = ""

    def __post_init__(self):
        if not isinstance(self.kind, ChangeKind):
            object.__setattr__(self, "kind", ChangeKind.of(self.kind))

    @property
    def alert(self) -> bool:
        """Whether it reports something that went wrong (``ALERT_KINDS``)."""
        return self.kind in ALERT_KINDS

    @property
    def line(self) -> str:
        """``"step N: text"``: the trainer's message while this is its latest change."""
        return f"step {self.step}: {self.text}"

    @classmethod
    def from_dict(cls, entry: dict) -> Change:
        """An entry as a checkpoint keeps it (``dataclasses.asdict``). Fields this version does not know are
        left out, so a log written by a later version still reads."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in entry.items() if k in known})


# -- the state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainerState:
    """Everything a run goes on from, and what its views show of its past; the arrays are copies.

    Shapes: H hidden units, V characters, B sequences per batch, L layers.
    """

    # -- what the run is
    config: TrainConfig  # its settings; config.hyper: the hyperparameters it started with
    hyper: HyperParams  # the hyperparameters in force now
    vocab: str  # the vocabulary's characters, in index order
    corpus_path: str  # where the text came from (for people: a trainer reads its own corpus)
    run_id: str | None  # None: read from a checkpoint older than run ids (the trainer keeps its own id)
    # -- what training goes on from
    params: dict[str, np.ndarray]  # by name (rnntui.model): u (H, V), w (H, H), bh (H, 1), … v (V, H), by (V, 1)
    optimizer: dict  # Optimizer.state_dict(): {"name", "t", "state": {slot: {param: array}}}
    h: list  # the state carried into the next batch: per layer a tuple of (B, H) rows (h, and c for the lstm)
    stream: dict  # BatchStream.state(): {"position", "epoch"}
    rng: dict  # the sampling generator's bit_generator.state
    monitor: dict  # Monitor.state_dict(): {"x": (blocks, H) power-iteration vectors, "sigma", "sigmas", "fired"}
    step: int
    chars_seen: int
    elapsed: float  # seconds spent in training steps
    # -- what the views show of the past
    loss: float | None = None
    loss_ema: float | None = None
    val_loss: float | None = None
    val_step: int | None = None
    history: dict[str, dict] = field(default_factory=dict)  # series name -> History.state()
    samples: tuple[Sample, ...] = ()
    changes: tuple[Change, ...] = ()
    # -- this session's: handed to and from the training process, never written to a file
    status: str | None = None  # the trainer's run state (None: left as it is, e.g. from a checkpoint)
    message: str = ""
    error: str | None = None
    saved_step: int | None = None
    saved_path: str | None = None
    claimed: dict = field(default_factory=dict)  # files this run may replace although not its own (checkpoint.claim)
    # the monitor's figures of the last step (a GradStats and a Reach; this module is below the monitor, so
    # their types are not named here)
    grad_stats: Any = None
    reach: Any = None
    discarded: str | None = None
    reaches: Any = ()  # monitor.LayerReach per layer
    gates: Any = ()  # per layer, the gates' Saturation figures
    # -- what training goes on from, added later (None: a checkpoint from before; the trainer's own stays)
    dropout_rng: dict | None = None  # the dropout masks' generator's bit_generator.state
