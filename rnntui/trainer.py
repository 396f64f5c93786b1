"""The training loop: owns model, optimizer, data position and RNG.

Other threads talk to a running :class:`Trainer` only through :meth:`Trainer.send`
(a thread-safe queue of commands, applied between steps) and read it only through
the immutable :class:`Snapshot` objects it publishes. Nothing here imports a UI.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import secrets
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from . import checkpoint
from .config import ConfigError, HyperParams, TrainConfig
from .corpus import BatchStream, Corpus
from .model import CharRNN, layout_of
from .monitor import GradStats, History, LayerReach, Monitor, PassReach, Reach, exact_sigmas, largest
from .optim import clip_grads, make_optimizer
from .recall import RecallFigures, RecallProbe
from .state import ALERT_KINDS, Change, ChangeKind, Sample, TrainerState  # noqa: F401 — re-exported

# -- commands (the control channel) ---------------------------------------------


@dataclass(frozen=True)
class Pause:
    pass


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class Set:
    """Change hyperparameters, e.g. ``Set({"lr": 1e-3, "clip_mode": "none"})``."""

    changes: dict


@dataclass(frozen=True)
class SampleNow:
    pass


@dataclass(frozen=True)
class SaveCheckpoint:
    path: str | None = None  # None: the trainer's own checkpoint path


@dataclass(frozen=True, eq=False)
class Inspect:
    """Ask for a consistent float64 copy of the weights and the last batch (a ``derivation.Inspection``),
    delivered to ``future`` between two steps."""

    future: Future


@dataclass(frozen=True)
class Stop:
    save: bool = False  # write the checkpoint first (when a path is configured)
    discard: bool = False  # end without the last save a run's end makes of unsaved steps (rnntui stop --no-save)


Command = Pause | Resume | Set | SampleNow | SaveCheckpoint | Inspect | Stop

# -- what the trainer publishes -----------------------------------------------------


class RunState(StrEnum):
    """What the loop is doing. The values are what snapshots, metrics and checkpoints hold."""

    RUNNING = "running"
    PAUSED = "paused"
    DIVERGED = "diverged"
    CRASHED = "crashed"
    FINISHED = "finished"
    STOPPED = "stopped"


RUNNING, PAUSED, DIVERGED, CRASHED = RunState.RUNNING, RunState.PAUSED, RunState.DIVERGED, RunState.CRASHED
FINISHED, STOPPED = RunState.FINISHED, RunState.STOPPED


@dataclass(frozen=True)
class Snapshot:
    """Everything a view shows, as plain numbers and small array copies."""

    version: int
    state: RunState
    step: int
    epoch: int
    epoch_progress: float
    chars_seen: int
    chars_per_sec: float
    elapsed: float
    loss: float | None  # train loss per character (nats), latest step
    loss_ema: float | None
    val_loss: float | None
    val_step: int | None
    hyper: HyperParams
    config: TrainConfig
    grad_stats: GradStats | None
    history: dict = field(repr=False)  # name -> (steps, values)
    reach: Reach | None = None  # how far one loss's gradient reaches back (measured every reach_every steps)
    discarded: str | None = None  # set after a divergence: which of the figures are of the discarded update
    samples: tuple[Sample, ...] = ()
    changes: tuple[Change, ...] = ()
    message: str = ""
    error: str | None = None
    checkpoint_path: str | None = None
    saved_step: int | None = None
    saved_path: str | None = None  # where the last save went (another name than checkpoint_path: see save())
    vocab_size: int = 0
    corpus_path: str = ""
    time: float = 0.0  # time.monotonic() when published (one clock for every process on the machine)
    recall: RecallFigures | None = None  # copy loss per distance k (corpora in recall.txt's format only)
    sigmas: dict = field(default_factory=dict)  # σmax of every recurrent block (w, w_l1, w_hh[f], …), latest estimate
    reaches: tuple[LayerReach, ...] = ()  # every layer's reach (h; c for the lstm), bottom first, measured with reach
    gates: tuple = ()  # per layer, bottom first: the gates' cells.Saturation figures, measured with the reach


#: The series recorded for every model, then per tensor (and the total) f"{kind}:{tensor}"
SERIES = ("loss", "loss_ema", "val_loss", "lr", "sigma_max", "saturation", "reach_factor")
TENSOR_SERIES = ("pre", "post", "ratio")


def history_names(config: TrainConfig) -> tuple[str, ...]:
    """The series a trainer with ``config`` records: SERIES, then the gradient figures of each parameter tensor
    (named as the model names them) and of the total."""
    names = layout_of(config.cell, 1, config.hidden_size, config.layers).names
    return SERIES + tuple(f"{kind}:{name}" for name in names + ("total",) for kind in TENSOR_SERIES)


#: The series of the lecture's model (the rnn, one layer).
HISTORY_NAMES = history_names(TrainConfig())

EMA_DECAY = 0.98
#: The gradient's reach costs one extra backward pass of the recurrence (~0.7–1.2 ms, ~20 % of a step at
#: 128/25/32), so it is measured every this many steps: ~0.5 % of the training time, still a few times a
#: second at 128/25/32 (benchmarks/throughput.py, "monitor").
REACH_EVERY = 50
#: A loss per character this many times ln V (an untrained model's) counts as diverged, even if finite.
EXPLODED_FACTOR = 20.0


class Trainer:
    """Runs training steps on ``corpus`` with ``config``; see the module docstring."""

    def __init__(self, corpus: Corpus, config: TrainConfig | None = None, *, checkpoint_path: str | None = None,
                 checkpoint_every: int = 0, checkpoint_seconds: float = 0.0, publish_interval: float = 0.1):
        config = (config or TrainConfig()).validated()
        corpus.check_fits(config.seq_length, config.batch_size)
        self.corpus = corpus
        self.config = config
        self.hyper = config.hyper
        self.model = CharRNN(corpus.vocab.size, config.hidden_size, seed=config.seed, dtype=np.dtype(config.dtype),
                             init=config.init, chars=corpus.vocab.chars, cell=config.cell, layers=config.layers,
                             dropout=config.dropout, forget_bias=config.forget_bias)
        self.optimizer = make_optimizer(self.hyper.optimizer, self.model.params, self.hyper.lr)
        self.stream = BatchStream(corpus.train, config.batch_size, config.seq_length)
        self.h = self.model.zero_state(config.batch_size)
        self.rng = np.random.default_rng(config.seed + 1)
        self.dropout_rng = np.random.default_rng(config.seed + 2)  # the dropout masks' (part of the state)
        self.monitor = Monitor(config.hidden_size, seed=config.seed, names=self.model.layout.sigma_names)
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = int(checkpoint_every)
        self.checkpoint_seconds = float(checkpoint_seconds)  # periodic saves by time (0: by steps only)
        self._last_save_time = time.monotonic()
        self._mid_update = False  # the optimizer is changing the parameters (undone if it raises)
        self.publish_interval = publish_interval
        self.step = 0
        self.chars_seen = 0
        self.elapsed = 0.0
        self.state = PAUSED
        self.loss: float | None = None
        self.loss_ema: float | None = None
        self.val_loss: float | None = None
        self.val_step: int | None = None
        self.grad_stats: GradStats | None = None
        self.reach: Reach | None = None
        self.reaches: tuple[LayerReach, ...] = ()
        self.gates: tuple = ()
        self.sigmas: dict[str, float] = {}
        self.reach_every = REACH_EVERY
        self.discarded: str | None = None
        self.history = {name: History() for name in history_names(config)}
        self.samples: deque[Sample] = deque(maxlen=50)
        self.changes: deque[Change] = deque(maxlen=200)
        self.message = ""
        self.error: str | None = None
        self.saved_step: int | None = None
        self.saved_path: str | None = None
        self.discarding = False  # the Stop that ended the run said not to save (Stop.discard)
        self.stopped_from: RunState | None = None  # the state a Stop ended (diverged, crashed, running …)
        # A save replaces only this run's own files: those whose header carries this id (kept across
        # resumes), and those claimed when the run started (checkpoint.claim); see checkpoint.destination.
        self.run_id = secrets.token_hex(8)
        self.claimed: dict = {}
        self._before_update = self.model.params.clone()
        self._last_batch: tuple | None = None  # inputs, targets, the state and the dropout masks of the last pass
        self._controls: queue.SimpleQueue = queue.SimpleQueue()
        self._rate: deque[tuple[float, int]] = deque(maxlen=64)
        self._val_batches = self._make_val_batches()
        self.recall = RecallProbe.for_corpus(corpus, config.seq_length, config.val_chars)  # None: not recall format
        self._version = 0
        self.latest: Snapshot | None = None
        self._max_steps: int | None = None

    # -- control channel ---------------------------------------------------------
    def send(self, command: Command) -> None:
        """Queue a command; the training thread applies it before its next step."""
        self._controls.put(command)

    def note(self, kind: ChangeKind, text: str) -> Change:
        """Add a change at the current step to the log; the message then reports it. For the training thread
        and its observers (``on_step``)."""
        change = Change(self.step, kind, text)
        self.changes.append(change)
        self.message = change.line
        return change

    def apply(self, command: Command) -> bool:
        """Apply one command now (training thread only). Returns False on Stop."""
        if isinstance(command, Pause):
            if self.state == RUNNING:
                self.state = PAUSED
                self.note(ChangeKind.PAUSED, "paused")
        elif isinstance(command, Resume):
            if self.state in (PAUSED, DIVERGED, FINISHED):
                if self.state == FINISHED:
                    self._max_steps = None
                if self.state == DIVERGED:
                    self._recover()
                self.state = RUNNING
                self._rate.clear()
                self.note(ChangeKind.RESUMED, "resumed")
        elif isinstance(command, Set):
            self.set_hyper(**command.changes)
        elif isinstance(command, SampleNow):
            self.sample()
        elif isinstance(command, SaveCheckpoint):
            self.save(command.path)
        elif isinstance(command, Inspect):
            try:
                command.future.set_result(self.inspection())
            except Exception as e:  # noqa: BLE001 — delivered to the asker
                command.future.set_exception(e)
        elif isinstance(command, Stop):
            if command.save and self.checkpoint_path:
                self.save()
            self.discarding = command.discard
            self.stopped_from = self.state
            self.state = STOPPED
            return False
        return True

    def set_hyper(self, **changes) -> None:
        """Validate and apply hyperparameter changes; a refused change is reported, not raised."""
        try:
            new = self.hyper.replace(**changes)
        except ConfigError as e:
            self.note(ChangeKind.REFUSED, f"refused: {e}")
            return
        old = self.hyper
        self.hyper = new
        if new.optimizer != old.optimizer:
            self.optimizer = make_optimizer(new.optimizer, self.model.params, new.lr)
        self.optimizer.lr = new.lr
        diffs = [f"{k} {_fmt(getattr(old, k))} → {_fmt(getattr(new, k))}" for k in changes
                 if getattr(old, k) != getattr(new, k)]
        if new.optimizer != old.optimizer:
            diffs.append("(optimizer state starts fresh)")
        if diffs:
            self.note(ChangeKind.SET, ", ".join(diffs))

    def _recover(self) -> None:
        """Before resuming after divergence: fresh hidden state and fresh optimizer state."""
        self.h = self.model.zero_state(self.config.batch_size)
        self.optimizer = make_optimizer(self.hyper.optimizer, self.model.params, self.hyper.lr)
        self.note(ChangeKind.RECOVERED, "after divergence the optimizer state starts fresh")

    # -- one step ----------------------------------------------------------------
    def train_step(self) -> GradStats | None:
        """One step of truncated BPTT. Returns its statistics, or None when it diverged."""
        cfg, hp = self.config, self.hyper
        inputs, targets, wrapped = self.stream.next()
        if wrapped:
            self.h = self.model.zero_state(cfg.batch_size)
        masks = self.model.draw_masks(self.dropout_rng, cfg.batch_size, cfg.seq_length)
        self._last_batch = (inputs, targets, self.h, masks)
        extra = () if masks is None else (masks,)
        loss, grads, h_last, diag = self.model.loss_and_grads(inputs, targets, self.h, *extra)
        pre = self.monitor.pre_clip(grads, hp.clip_mode, hp.clip)
        step = self.step + 1
        if not math.isfinite(loss) or pre.nonfinite:
            what = f"non-finite gradient in {pre.nonfinite}" if pre.nonfinite else "non-finite loss" + _largest(pre)
            return self._diverge(step, what)
        limit = EXPLODED_FACTOR * math.log(max(self.corpus.vocab.size, 2))
        if loss / cfg.seq_length > limit:
            return self._diverge(step, f"loss exploded to {loss / cfg.seq_length:.3g} nats/char "
                                       f"(> {EXPLODED_FACTOR:g}× ln V = {limit:.3g}){_largest(pre)}")
        scale = clip_grads(grads, hp.clip_mode, hp.clip)
        np.copyto(self._before_update.flat, self.model.params.flat)  # what the loss of this step was measured on
        self._mid_update = True
        deltas = self.optimizer.step(self.model.params, grads)
        bad = _nonfinite(self.model.params)
        self._mid_update = False
        if bad:
            self._undo_update()
            return self._diverge(step, f"non-finite parameter {bad} after the update", undone=True)
        self.h = h_last
        self.step = step
        self.chars_seen += inputs.size
        T = cfg.seq_length
        self.loss = loss / T
        self.loss_ema = self.loss if self.loss_ema is None else EMA_DECAY * self.loss_ema + (1 - EMA_DECAY) * self.loss
        stats = self.monitor.measure(step, pre, grads, deltas, self.model.params, diag, hp.clip_mode, hp.clip, scale)
        self.grad_stats = stats
        self.sigmas = self.monitor.sigmas
        self.discarded = None
        if self.reach is None or step % self.reach_every == 0:
            # on the weights this step's pass ran on (the cells kept theirs, v is in _before_update), before
            # validation reuses the buffers
            self._take(self.monitor.reach(step, self._before_update["v"], diag))
        self._record(stats)
        if hp.val_every and step % hp.val_every == 0:
            self.validate()
        if hp.sample_every and step % hp.sample_every == 0:
            self.sample()
        if self.checkpoint_path and (
                (self.checkpoint_every and step % self.checkpoint_every == 0)
                or (self.checkpoint_seconds and time.monotonic() - self._last_save_time >= self.checkpoint_seconds)):
            self.save()
        return stats

    def _record(self, s: GradStats) -> None:
        h, step = self.history, self.step
        h["loss"].append(step, self.loss)
        h["loss_ema"].append(step, self.loss_ema)
        h["lr"].append(step, self.hyper.lr)
        h["sigma_max"].append(step, s.sigma_max)
        h["saturation"].append(step, s.saturation)
        if self.reach is not None and self.reach.step == step:
            h["reach_factor"].append(step, self.reach.factor)
        for p in s.params + (s.total,):
            h[f"pre:{p.name}"].append(step, p.norm_pre)
            h[f"post:{p.name}"].append(step, p.norm_post)
            h[f"ratio:{p.name}"].append(step, p.update_ratio)

    def _take(self, figures: PassReach) -> None:
        """The reach of every layer and the gate figures of one pass, as the snapshots show them."""
        self.reach, self.reaches, self.gates = figures.reach, figures.reaches, figures.gates

    def _undo_update(self) -> None:
        np.copyto(self.model.params.flat, self._before_update.flat)

    def _diverge(self, step: int, what: str, *, undone: bool = False) -> None:
        """Stop in the DIVERGED state with the last parameters whose loss was still healthy. ``undone``: this
        step's own update was already taken back (it made a parameter non-finite), so the parameters are those
        the step measured, whose loss was healthy; otherwise the step measured a bad loss on the parameters the
        previous update made, and that update is taken back."""
        self.state = DIVERGED
        self.h = self.model.zero_state(self.config.batch_size)
        kept = self.step
        if self.step > 0 and not undone:
            self._undo_update()  # the parameters this step measured came from a bad update
            kept = self.step - 1
        self.note(ChangeKind.DIVERGED, f"DIVERGED at step {step}: {what}; kept the parameters of step {kept} "
                                       "(the last with a healthy loss) — lower lr or turn clipping on, then resume")
        self._measure_kept(kept)
        return None

    def _measure_kept(self, kept: int) -> None:
        """After a divergence: σmax of the recurrent blocks, saturation, the gates and the reach of the parameters
        kept, on the last batch (with its dropout masks), so the panels show the weights training goes on from;
        the gradient figures stay those of the last measured update, and ``discarded`` says so."""
        if self._last_batch is None:
            return
        m = self.model.astype(np.float64)
        with np.errstate(all="ignore"):
            figures = self.monitor.reach_on(kept, m, *self._last_batch)  # one forward pass for all of them
            self.sigmas = exact_sigmas(m.params)
        self._take(figures)
        saturation, sigma = figures.saturation, largest(self.sigmas.values())
        if self.grad_stats is not None:
            self.discarded = (f"gradients of step {self.grad_stats.step}'s update (discarded); σmax, saturation, "
                              f"reach: of the kept parameters of step {kept}")
            self.grad_stats = dataclasses.replace(self.grad_stats, sigma_max=sigma, saturation=saturation)

    def inspection(self):
        """A float64 copy of the weights the last step's pass ran on, with its batch, initial states and dropout
        masks (before any step: the weights and the next batch), every layer's gradient reach and the exact σmax
        of every recurrent block. The reaches and gates shown on the main screen are set to the same figures, so
        the two views agree."""
        from .derivation import Inspection

        if self._last_batch is None:
            inputs, targets = self.stream.peek()
            inputs, targets, h0, masks = inputs, targets, self.h, None
        else:
            inputs, targets, h0, masks = self._last_batch
        frozen = self.model.astype(np.float64)
        np.copyto(frozen.params.flat, self._before_update.flat)  # the weights the last pass ran on (not the update's)
        given = h0[0][0].T if self.model.lecture else h0  # the lecture's model: its (H, B) columns, as ever
        ins = Inspection.from_arrays(self.step, frozen, inputs, targets, given, masks=masks)
        figures = self.monitor.reach_on(self.step, ins.model, inputs, targets, h0, masks)
        self._take(figures)
        return dataclasses.replace(ins, reach=figures.reach, reaches=figures.reaches)

    # -- validation and sampling -------------------------------------------------
    def _make_val_batches(self) -> list[tuple[np.ndarray, np.ndarray]]:
        data = self.corpus.val[: self.config.val_chars + 1]
        T = self.config.seq_length
        if len(data) < T + 1:
            return []
        B = max(1, min(self.config.batch_size, (len(data) - 1) // T))
        s = BatchStream(data, B, T)
        return [s.next()[:2] for _ in range(s.batches_per_epoch)]

    def validate(self) -> float | None:
        """Loss per character on the held-out text (None when there is none)."""
        if self.recall is not None and self.recall.due(self.step):
            self.recall.measure(self.model, self.step)
        if not self._val_batches:
            return None
        total = chars = 0.0
        h = None
        for x, y in self._val_batches:
            loss, h = self.model.loss(x, y, h)
            total += loss * x.shape[0]
            chars += x.size
        self.val_loss = total / chars
        self.val_step = self.step
        self.history["val_loss"].append(self.step, self.val_loss)
        return self.val_loss

    def sample(self, n: int | None = None, temperature: float | None = None) -> Sample:
        """Generate text continuing the first stream's current text from its hidden state."""
        n = self.hyper.sample_length if n is None else n
        temp = self.hyper.temperature if temperature is None else temperature
        # stream 0's state has read train[0 : position]; the next character it would read is train[position]
        last = int(self.corpus.train[min(self.stream.position, len(self.corpus.train) - 1)]) if self.step else 0
        text = self.model.sample(self.model.state_of(self.h, 0), last, n, temp, self.rng)
        s = Sample(self.step, temp, text)
        self.samples.append(s)
        return s

    # -- checkpoints -------------------------------------------------------------
    def save(self, path: str | None = None) -> str | None:
        """Write a checkpoint (atomically) to ``path`` (default: the checkpoint path) and return where it went:
        when that file is not this run's own, to a free name beside it (``checkpoint.destination``), and the
        change log says so. Failures are reported in ``message``, not raised."""
        path = path or self.checkpoint_path
        if not path:
            self.message = f"step {self.step}: no checkpoint path; start with --checkpoint PATH to save"
            return None
        self._last_save_time = time.monotonic()  # also after a failure: the next periodic try waits its turn
        try:
            where, why = checkpoint.destination(path, self.run_id, self.claimed)
            checkpoint.save(where, self.state_dict())
        except checkpoint.CheckpointError as e:
            self.note(ChangeKind.SAVE_FAILED, f"checkpoint NOT saved: {e}")
            return None
        self.saved_step, self.saved_path = self.step, where
        self.note(ChangeKind.SAVED, f"checkpoint saved to {where}" + (f" ({why})" if why else ""))
        return where

    def state_dict(self) -> TrainerState:
        """Everything this run goes on from and what its views show of its past, as one value (copies): what a
        checkpoint holds (``checkpoint.save``) and what the training process hands over. Each part gives its
        own piece (the optimizer's, the monitor's, the stream's and each history's ``state_dict``/``state``)."""
        return TrainerState(
            config=self.config, hyper=self.hyper, vocab=self.corpus.vocab.chars, corpus_path=self.corpus.path,
            run_id=self.run_id, params={k: p.copy() for k, p in self.model.params.items()},
            optimizer=self.optimizer.state_dict(), h=[tuple(a.copy() for a in s) for s in self.h],
            stream=self.stream.state(), dropout_rng=self.dropout_rng.bit_generator.state,
            rng=self.rng.bit_generator.state, monitor=self.monitor.state_dict(),
            step=self.step, chars_seen=self.chars_seen, elapsed=self.elapsed,
            loss=self.loss, loss_ema=self.loss_ema, val_loss=self.val_loss, val_step=self.val_step,
            history={name: h.state() for name, h in self.history.items()},
            samples=tuple(self.samples), changes=tuple(self.changes),
            status=self.state, message=self.message, error=self.error, saved_step=self.saved_step,
            saved_path=self.saved_path, claimed=dict(self.claimed), grad_stats=self.grad_stats, reach=self.reach,
            discarded=self.discarded, reaches=self.reaches, gates=self.gates,
        )

    def load_state_dict(self, state: TrainerState) -> None:
        """Go on from ``state`` (:meth:`state_dict`, ``Checkpoint.state()``). This trainer must have been built
        on the state's vocabulary with the same settings, the hyperparameters aside: those of ``state`` take
        over, and an optimizer state of another rule than ``state.hyper``'s is left out (that rule starts
        fresh, as when it is switched mid-run). A state that does not fit raises ValueError, TypeError or
        KeyError, and may leave this trainer half loaded."""
        if state.vocab != self.corpus.vocab.chars:
            raise ValueError("the state's vocabulary is not the corpus's")
        if dataclasses.replace(state.config, hyper=self.config.hyper) != self.config:
            raise ValueError("the state is of a run with other settings")
        if set(state.params) != set(self.model.params):
            raise ValueError(f"the state holds the parameters {sorted(state.params)}, not {sorted(self.model.params)}")
        for k, p in self.model.params.items():
            given = np.asarray(state.params[k])
            if given.shape != p.shape or not np.issubdtype(given.dtype, np.floating):
                raise ValueError(f"parameter {k} has shape {given.shape} and type {given.dtype}, not {p.shape} floats")
        shape = (self.config.layers, len(self.model.state_names), self.config.batch_size, self.config.hidden_size)
        if np.shape(state.h) != shape:
            raise ValueError(f"the carried state has shape {np.shape(state.h)} (layers, states, B, H), not {shape}")
        self.hyper = state.hyper
        self.optimizer = make_optimizer(state.hyper.optimizer, self.model.params, state.hyper.lr)
        if state.optimizer["name"] == self.optimizer.name:
            self.optimizer.load_state_dict(state.optimizer)
        self.monitor.load_state_dict(state.monitor)
        self.rng.bit_generator.state = state.rng
        if state.dropout_rng is not None:  # None: a checkpoint from before dropout (whose runs drew no masks)
            self.dropout_rng.bit_generator.state = state.dropout_rng
        for k, p in self.model.params.items():
            np.copyto(p, state.params[k])
        # what a divergence rolls back to, and what inspection shows, until the next step
        np.copyto(self._before_update.flat, self.model.params.flat)
        self._last_batch = None
        self.h = [tuple(np.array(a, dtype=self.model.dtype) for a in s) for s in state.h]
        self.stream.position, self.stream.epoch = int(state.stream["position"]), int(state.stream["epoch"])
        self.step, self.chars_seen, self.elapsed = state.step, state.chars_seen, state.elapsed
        self.loss, self.loss_ema = state.loss, state.loss_ema
        self.val_loss, self.val_step = state.val_loss, state.val_step
        for name, hist in self.history.items():
            hist.load(state.history.get(name) or {"steps": (), "values": ()})
        self.samples.clear()
        self.samples.extend(state.samples)
        self.changes.clear()
        self.changes.extend(state.changes)
        if state.run_id is not None:  # None: a checkpoint from before run ids, continued under this run's id
            self.run_id = state.run_id
        if state.status is not None:
            self.state = state.status
        self.message, self.error = state.message, state.error
        self.saved_step, self.saved_path, self.claimed = state.saved_step, state.saved_path, dict(state.claimed)
        self.grad_stats, self.reach, self.discarded = state.grad_stats, state.reach, state.discarded
        self.reaches, self.gates, self.sigmas = tuple(state.reaches), tuple(state.gates), self.monitor.sigmas
        self._rate.clear()

    # -- snapshots -----------------------------------------------------------------
    def chars_per_sec(self) -> float:
        if len(self._rate) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self._rate[0], self._rate[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0

    def snapshot(self) -> Snapshot:
        self._version += 1
        return Snapshot(
            version=self._version, state=self.state, step=self.step, epoch=self.stream.epoch,
            epoch_progress=self.stream.progress, chars_seen=self.chars_seen, chars_per_sec=self.chars_per_sec(),
            elapsed=self.elapsed, loss=self.loss, loss_ema=self.loss_ema, val_loss=self.val_loss,
            val_step=self.val_step, hyper=self.hyper, config=self.config, grad_stats=self.grad_stats, reach=self.reach,
            discarded=self.discarded,
            history={k: h.arrays() for k, h in self.history.items()}, samples=tuple(self.samples),
            changes=tuple(self.changes), message=self.message, error=self.error,
            checkpoint_path=self.checkpoint_path, saved_step=self.saved_step,
            saved_path=self.saved_path, vocab_size=self.corpus.vocab.size,
            corpus_path=self.corpus.path, time=time.monotonic(),
            recall=self.recall.latest if self.recall is not None else None, sigmas=dict(self.sigmas),
            reaches=self.reaches, gates=self.gates,
        )

    def publish(self) -> Snapshot:
        self.latest = snap = self.snapshot()
        return snap

    # -- the loop ------------------------------------------------------------------
    def run(self, *, max_steps: int | None = None, on_step: Callable[[Trainer], None] | None = None,
            on_publish: Callable[[Snapshot], None] | None = None, start_paused: bool = False,
            stop_event: threading.Event | None = None, stay_alive: bool = False) -> str:
        """Train until ``max_steps`` (total), a Stop command or ``stop_event``. Returns the final state.

        Commands are applied between steps. While paused, diverged or crashed the loop
        waits on the control queue. Snapshots are published every ``publish_interval``
        seconds and whenever a command was applied. An exception inside a step puts the
        trainer in the ``crashed`` state with the error kept; it still serves commands
        (save, stop) until stopped. With ``stay_alive`` the loop also keeps serving
        commands after reaching ``max_steps`` (a view stays open); Resume then trains on
        without a limit.
        """
        self._max_steps = max_steps
        self._last_save_time = time.monotonic()
        self.state = PAUSED if start_paused else RUNNING
        if self.state == RUNNING:
            self.note(ChangeKind.STARTED, "started")

        def emit():
            snap = self.publish()
            if on_publish:
                on_publish(snap)

        emit()
        last_pub = time.monotonic()
        while True:
            if stop_event is not None and stop_event.is_set():
                self.state = STOPPED
                break
            applied = False
            try:
                block = self.state != RUNNING
                cmd = self._controls.get(timeout=0.05) if block else self._controls.get_nowait()
                applied = True
                if not self._apply_safely(cmd):
                    break
                while True:  # drain whatever else is queued
                    if not self._apply_safely(self._controls.get_nowait()):
                        return self._finish(emit)
            except queue.Empty:
                pass
            if self.state == RUNNING:
                if self._max_steps is not None and self.step >= self._max_steps:
                    self.state = FINISHED
                    self.note(ChangeKind.FINISHED, f"finished: reached {self._max_steps} steps")
                    emit()
                    if not stay_alive:
                        break
                    continue
                t0 = time.monotonic()
                try:
                    self.train_step()
                except Exception as e:  # noqa: BLE001 — shown to the user, training stops
                    self._crash(e)
                    applied = True
                t1 = time.monotonic()
                self.elapsed += t1 - t0
                self._rate.append((t1, self.chars_seen))
                if on_step:
                    try:
                        on_step(self)
                    except Exception as e:  # noqa: BLE001 — a failing observer stops training like a failing step
                        self._crash(e)
                        applied = True
            now = time.monotonic()
            if applied or now - last_pub >= self.publish_interval:
                emit()
                last_pub = now
        return self._finish(emit)

    def _crash(self, e: BaseException) -> None:
        """Enter the CRASHED state: keep the error, the parameters of the last whole step, and serve commands."""
        if self._mid_update:  # the optimizer raised halfway: no tensor may keep half an update
            self._undo_update()
            self._mid_update = False
        self.state = CRASHED
        self.error = "".join(traceback.format_exception(e))
        self.note(ChangeKind.CRASHED, f"CRASHED: {type(e).__name__}: {e}")

    def _apply_safely(self, command: Command) -> bool:
        try:
            return self.apply(command)
        except Exception as e:  # noqa: BLE001 — a failing command stops training, the thread keeps serving
            self._crash(e)
            return not isinstance(command, Stop)  # a Stop still stops, even if its save failed this way

    def _finish(self, emit) -> str:
        emit()
        return self.state


def _nonfinite(params) -> str | None:
    """The first tensor holding NaN or Inf (one sum over the packed vector when all is well)."""
    if np.isfinite(params.flat.sum()):
        return None
    return next((k for k, p in params.items() if not np.isfinite(p.sum())), None)


def _largest(pre) -> str:
    """``"; largest gradient in w (‖g‖ 3.1e+04)"``: the tensor a divergence message names."""
    finite = {k: v for k, v in pre.norms.items() if math.isfinite(v)}
    if not finite:
        return ""
    k = max(finite, key=finite.get)
    return f"; largest gradient in {k} (‖g‖ {finite[k]:.3g})"


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def unsaved(run: Trainer | Snapshot) -> bool:
    """Whether ``run`` (a trainer, or a snapshot of one) has trained steps that no checkpoint holds."""
    return run.step > 0 and run.saved_step != run.step


def stop_commands(run: Trainer | Snapshot, fallback: str | None = None) -> tuple[Command, ...]:
    """The commands that stop ``run`` between steps without losing what it trained (a signal, the view gone):
    with a checkpoint path, save there and stop; without one, save to ``fallback`` (where the view saves, a
    rescue file) first when steps are unsaved."""
    if run.checkpoint_path:
        return (Stop(save=True),)
    if fallback and unsaved(run):
        return (SaveCheckpoint(fallback), Stop())
    return (Stop(),)


def resume_trainer(ckpt, corpus: Corpus, *, hyper_changes: dict | None = None, **kwargs) -> Trainer:
    """A trainer continuing from checkpoint ``ckpt`` (``corpus`` must use the checkpoint's vocabulary).

    A checkpoint whose parts do not fit together raises ``checkpoint.CheckpointError``."""
    if corpus.vocab != ckpt.vocab:
        raise ConfigError("the corpus must be encoded with the checkpoint's vocabulary to resume")
    state = ckpt.state()
    hyper = state.hyper.replace(**(hyper_changes or {}))
    trainer = Trainer(corpus, dataclasses.replace(state.config, hyper=hyper), **kwargs)
    # saving back into the file it came from is continuing it
    state = dataclasses.replace(state, hyper=hyper, claimed={**state.claimed, **checkpoint.claim(ckpt.path)})
    try:
        trainer.load_state_dict(state)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as e:
        raise ckpt.refusal(e) from None
    return trainer
