"""The checkpoint file format: a :class:`~rnntui.state.TrainerState` as one ``.npz`` of arrays plus a JSON header.

Header (``__header__``, UTF-8 JSON): format name and version, vocabulary, the run's configuration (with its
cell, layers and dropout) and current hyperparameters, step, data position, optimizer name and step count,
the monitor's latest σmax estimates and recent clip firings, the sampling and the dropout RNGs' states,
display state (losses, history strides and partly gathered points, the last samples), the change log (one
dict per entry) and the run's id.
Arrays: ``param.<name>`` (names as rnntui.model gives them), ``opt.<slot>.<name>``, ``state`` (the carried
state: (layers, states, B, H), each layer's h and, for the lstm, c as rows), ``monitor.x`` (the
power-iteration vectors, one per recurrent block) and ``hist.<series>.steps|values``.

Version 2 since the cells: a version 1 file (every file before them: the lecture's model) reads as an rnn of
one layer without dropout; it holds the carried state as ``h`` (H, B) columns, one power-iteration vector
(H,) and its ``sigma``, and no dropout RNG. Within a version fields were only ever added, and a file without
them still reads (the run id and the change log since the run ids; the monitor's figures and partly gathered
history points since the trainer's state became one value); the files in ``tests/data`` (version 1) are
checked to load and resume.

This module knows the format only: it reads and writes a ``TrainerState`` and never the trainer, which
makes one (``Trainer.state_dict``) and takes one back (``Trainer.load_state_dict``).

Writes are atomic: the file is written under a temporary name in the same folder,
flushed to disk and renamed over the old one, so a crash mid-save leaves the
previous checkpoint intact. Resuming restores everything training depends on, so
N steps + save + resume + M steps gives exactly the parameters of N + M steps.

No save replaces a file that is not the run's own: every run has an id (``Trainer.run_id``, kept
across resumes), written into the header; :func:`destination` sends a save whose file holds
another run's checkpoint, or anything else, to a free name beside it instead
(``persuasion.rnntui.npz`` → ``persuasion.rnntui-2.npz``).
"""

from __future__ import annotations

import dataclasses
import glob
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .cells import make_cell
from .config import ConfigError, HyperParams, TrainConfig
from .corpus import CorpusError, Vocab
from .model import CharRNN, layout_of
from .state import Change, Sample, TrainerState

FORMAT = "rnntui-checkpoint"
VERSION = 2
#: The versions this module reads (see the module docstring).
READS = (1, 2)
#: How many of the latest samples a checkpoint keeps.
SAMPLES_KEPT = 10

#: Called (in tests) after the temporary file is written and before it replaces the old one.
_before_replace = None


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read; the message says why and what to do."""


class HasState(Protocol):
    """What :func:`save` also accepts: a trainer, say."""

    def state_dict(self) -> TrainerState: ...


def check_writable(path: str | os.PathLike, what: str = "checkpoint", example: str = "run.npz",
                   replaced: bool = True) -> Path:
    """Fail now (not at the first write) when ``path`` cannot be written; nothing is created.

    ``what`` names the file in the messages (``checkpoint``, ``metrics``) and ``example`` is the file name
    suggested for a directory. A ``replaced`` file (a checkpoint, saved by an atomic rename) needs its folder
    to be writable even when the file exists; one that is only appended to (metrics) needs just the file.
    """
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{what} path is a directory: {p}; give a file name such as {p / example}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise CheckpointError(f"{what} folder does not exist: {parent}; create it first (mkdir -p {parent})")
    if not parent.is_dir():
        raise CheckpointError(f"{what} folder is not a directory: {parent}")
    if p.exists() and not os.access(p, os.W_OK):
        raise CheckpointError(f"{what} file is not writable (permission denied): {p}; check its permissions")
    if p.exists() and not replaced:
        return p
    try:
        fd, tmp = tempfile.mkstemp(prefix=".rnntui-write-test-", dir=parent)
    except OSError as e:
        raise CheckpointError(f"cannot write to {what} folder {parent}: {e.strerror or e}; "
                              "choose a writable place") from None
    os.close(fd)
    os.unlink(tmp)
    return p


# -- whose file is it ----------------------------------------------------------------------------------


def _parse_header(raw: np.ndarray | None) -> dict | None:
    """The header array of an ``.npz`` as a dict, None when it is missing or not JSON."""
    if raw is None:
        return None
    try:
        header = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return header if isinstance(header, dict) else None


def header_of(path: str | os.PathLike) -> dict | None:
    """The header of the rnntui checkpoint at ``path`` (its arrays are not read), None for anything else."""
    if not os.path.isfile(path):  # (a fifo or a device would block the read, or never end)
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            header = _parse_header(z["__header__"] if "__header__" in z.files else None)
    except Exception:  # noqa: BLE001 — any file at all: not a checkpoint, whatever numpy or zipfile says
        return None
    return header if header is not None and header.get("format") == FORMAT else None


def claim(path: str | os.PathLike) -> dict[str, tuple[int, int, int]]:
    """``path`` as it is now, for a run allowed to replace it although it is not the run's own checkpoint
    (the checkpoint it resumed from, a ``--checkpoint`` given with ``--overwrite``): a file put there
    afterwards is not covered. Empty when nothing is there."""
    identity = _identity(path)
    return {os.path.realpath(path): identity} if identity is not None else {}


def _identity(path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def may_replace(path: str | os.PathLike, run_id: str, claimed: dict | None = None) -> bool:
    """Whether a save of run ``run_id`` may write ``path``: nothing is there, or this run's own checkpoint
    (the same run id in its header), or a file the run claimed (:func:`claim`) and that has not changed since."""
    if not os.path.lexists(path):
        return True
    identity = _identity(path)
    if identity is not None and (claimed or {}).get(os.path.realpath(path)) == identity:
        return True
    header = header_of(path)
    return header is not None and header.get("run_id") == run_id


def describe(path: str | os.PathLike) -> str:
    """What occupies ``path``, for a message: "another run's checkpoint (step 500, H=64)", or "a file that is
    not an rnntui checkpoint"."""
    header = header_of(path)
    if header is None:
        return "a file that is not an rnntui checkpoint"
    config = header.get("config") if isinstance(header.get("config"), dict) else {}
    return f"another run's checkpoint (step {header.get('step')}, H={config.get('hidden_size')})"


#: How many numbered names beside a taken one :func:`destination` tries.
FREE_NAMES = 1000


def destination(path: str | os.PathLike, run_id: str, claimed: dict | None = None) -> tuple[str, str]:
    """Where a save of run ``run_id`` asked to go to ``path`` writes, and why not to ``path`` ("" when it does).

    ``path`` itself when the run may replace it (:func:`may_replace`); else the first of ``NAME-2.npz``,
    ``NAME-3.npz`` … beside it that is free or the run's own, so the run's later saves land in the same file.
    """
    if may_replace(path, run_id, claimed):
        return str(path), ""
    p = Path(path)
    why = f"{path} belongs to another run" if header_of(path) is not None else f"{path} is not an rnntui checkpoint"
    for n in range(2, FREE_NAMES + 1):
        candidate = p.with_name(f"{p.stem}-{n}{p.suffix}") if p.suffix else p.with_name(f"{p.name}-{n}")
        if may_replace(candidate, run_id, claimed):
            return str(candidate), why
    raise CheckpointError(f"{why}, and the {FREE_NAMES - 1} numbered names beside it are taken too; "
                          "save to another folder (--checkpoint PATH)")


# -- writing -------------------------------------------------------------------------------------------


def _arrays_and_header(state: TrainerState) -> tuple[dict[str, np.ndarray], dict]:
    """``state`` laid out as the file holds it (see the module docstring)."""
    arrays: dict[str, np.ndarray] = {f"param.{k}": p for k, p in state.params.items()}
    for slot, per_param in state.optimizer["state"].items():
        for k, a in per_param.items():
            arrays[f"opt.{slot}.{k}"] = a
    arrays["state"] = np.array(state.h)  # (layers, states, B, H)
    arrays["monitor.x"] = np.asarray(state.monitor["x"], np.float64)
    for name, hist in state.history.items():
        arrays[f"hist.{name}.steps"] = hist["steps"]
        arrays[f"hist.{name}.values"] = hist["values"]
    header = {
        "format": FORMAT,
        "version": VERSION,
        "vocab": state.vocab,
        "config": state.config.to_dict(),
        "hyper": dataclasses.asdict(state.hyper),
        "step": state.step,
        "chars_seen": state.chars_seen,
        "elapsed": state.elapsed,
        "stream": state.stream,
        "optimizer": {"name": state.optimizer["name"], "t": state.optimizer["t"]},
        "monitor": {"sigma": state.monitor.get("sigma"), "sigmas": state.monitor.get("sigmas"),
                    "fired": [bool(f) for f in state.monitor.get("fired", ())]},
        "rng": state.rng,
        "dropout_rng": state.dropout_rng,
        "loss": state.loss,
        "loss_ema": state.loss_ema,
        "val_loss": state.val_loss,
        "val_step": state.val_step,
        "history_strides": {name: h["stride"] for name, h in state.history.items()},
        "history_pending": {name: list(h["pending"]) for name, h in state.history.items() if h.get("pending")},
        "samples": [[s.step, s.temperature, s.text] for s in state.samples[-SAMPLES_KEPT:]],
        "corpus_path": state.corpus_path,
        "run_id": state.run_id,
        "changes": [dataclasses.asdict(c) for c in state.changes],
    }
    return arrays, header


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save(path: str | os.PathLike, state: TrainerState | HasState) -> Path:
    """Write ``state`` (a :class:`TrainerState`, or a trainer: its ``state_dict()``) to ``path`` atomically."""
    p = Path(path)
    arrays, header = _arrays_and_header(state if isinstance(state, TrainerState) else state.state_dict())
    buf = io.BytesIO()
    np.savez(buf, __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    parent = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint in {parent}: {e.strerror or e}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint gets the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        if _before_replace is not None:
            _before_replace(tmp)
        os.replace(tmp, p)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise CheckpointError(f"cannot write checkpoint {p}: {e.strerror or e}") from None
        raise
    try:
        dfd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    _remove_stale_temporaries(parent, p.name)
    return p


#: A temporary file of ours older than this was left by a process killed mid-save (kill -9, power cut).
STALE_AFTER = 600.0


def _remove_stale_temporaries(parent: Path, name: str) -> None:
    """Delete what an interrupted save of this checkpoint left behind (recent ones may be another writer's)."""
    for stale in parent.glob(f".{glob.escape(name)}.*.tmp"):
        try:
            if stale.stat().st_mtime < time.time() - STALE_AFTER:
                stale.unlink()
        except OSError:
            pass


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the JSON header and the arrays."""

    path: str
    header: dict
    arrays: dict[str, np.ndarray]

    @property
    def vocab(self) -> Vocab:
        return Vocab(self.header["vocab"])

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.header["config"])

    @property
    def hyper(self) -> HyperParams:
        return HyperParams(**self.header["hyper"])

    @property
    def step(self) -> int:
        return int(self.header["step"])

    def model(self):
        """A :class:`CharRNN` with this checkpoint's cell, layers, parameters and vocabulary."""
        cfg = self.config
        m = CharRNN(self.vocab.size, cfg.hidden_size, dtype=np.dtype(cfg.dtype), chars=self.vocab.chars,
                    cell=cfg.cell, layers=cfg.layers, dropout=cfg.dropout, forget_bias=cfg.forget_bias)
        for k in m.params:
            m.params[k][...] = self.arrays[f"param.{k}"]
        return m

    def state(self) -> TrainerState:
        """The :class:`TrainerState` this file holds, to give to ``Trainer.load_state_dict``: it is a save of its
        own step (``saved_step``, ``saved_path``). A header or arrays that do not fit together raise
        :class:`CheckpointError`; so should whatever the trainer finds wrong with it (:meth:`refusal`)."""
        try:
            return self._state()
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as e:
            raise self.refusal(e) from None

    def refusal(self, e: Exception) -> CheckpointError:
        """The error for a checkpoint whose parts do not fit together, ``e`` saying which."""
        what = f"{e!r}" if isinstance(e, KeyError) else str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        return CheckpointError(f"checkpoint is inconsistent and cannot be resumed ({what}): {self.path}; "
                               "resume from another checkpoint or start a new run")

    def _state(self) -> TrainerState:
        hd, arrays = self.header, self.arrays
        optimizer: dict = {"name": str(hd["optimizer"]["name"]), "t": _count(hd["optimizer"]["t"], "optimizer t"),
                           "state": {}}
        params: dict[str, np.ndarray] = {}
        history: dict[str, dict] = {}
        strides, pending = hd.get("history_strides", {}), hd.get("history_pending", {})
        for key, a in arrays.items():
            kind, _, name = key.partition(".")
            if kind == "param":
                params[name] = a
            elif kind == "opt":  # opt.<slot>.<parameter>
                slot, _, param = name.partition(".")
                optimizer["state"].setdefault(slot, {})[param] = a
            elif kind == "hist" and name.endswith(".steps"):
                series = name.removesuffix(".steps")
                values = arrays[f"hist.{series}.values"]
                if values.shape != a.shape or a.ndim != 1:
                    raise ValueError(f"history {series} has {a.shape} steps and {values.shape} values")
                history[series] = {"steps": a, "values": values, "stride": _count(strides.get(series, 1), "stride"),
                                   "pending": _pending(pending.get(series), series)}
        monitor = hd.get("monitor", {})  # none before the trainer's state was one value
        fired, sigma, sigmas = monitor.get("fired", []), monitor.get("sigma"), monitor.get("sigmas")
        if not isinstance(fired, list) or not all(isinstance(f, bool) for f in fired):
            raise ValueError(f"monitor.fired is {fired!r}, not a list of true and false")
        run_id = hd.get("run_id")  # none in a checkpoint from before run ids
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise ValueError(f"run_id is {run_id!r}, not a run id")
        step = _count(hd["step"], "step")
        return TrainerState(
            config=self.config, hyper=self.hyper, vocab=self.vocab.chars, corpus_path=str(hd.get("corpus_path", "")),
            run_id=run_id, params=params, optimizer=optimizer, h=_carried(hd, arrays),
            dropout_rng=hd.get("dropout_rng"),
            stream={"position": _count(hd["stream"]["position"], "stream position"),
                    "epoch": _count(hd["stream"]["epoch"], "epoch")},
            rng=hd["rng"], monitor={"x": arrays["monitor.x"], "sigma": sigma, "sigmas": sigmas, "fired": fired},
            step=step, chars_seen=_count(hd["chars_seen"], "chars_seen"), elapsed=_number(hd["elapsed"], "elapsed"),
            loss=_number(hd["loss"], "loss", None), loss_ema=_number(hd["loss_ema"], "loss_ema", None),
            val_loss=_number(hd["val_loss"], "val_loss", None),
            val_step=None if hd["val_step"] is None else _count(hd["val_step"], "val_step"),
            history=history,
            samples=tuple(Sample(int(s), float(t), str(x)) for s, t, x in hd.get("samples", [])),
            changes=tuple(_change(entry) for entry in hd.get("changes", [])),
            saved_step=step, saved_path=self.path,
        )


def load(path: str | os.PathLike, given_as: str = "the checkpoint path") -> Checkpoint:
    """Read and check a checkpoint; a file that is not ours, truncated or of another version is refused.

    ``given_as`` says where the user gave the path ("the path given to --resume"), for the messages.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}; check {given_as}")
    if p.is_dir():
        raise CheckpointError(f"checkpoint path is a directory: {p}; check {given_as}: it must name a file")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except PermissionError:
        raise CheckpointError(f"checkpoint is not readable (permission denied): {p}") from None
    except Exception:  # noqa: BLE001 — untrusted bytes: zipfile and numpy raise a zoo of errors on them
        raise CheckpointError(f"not an rnntui checkpoint, or corrupt or truncated: {p}; "
                              f"check {given_as}: it must name a checkpoint that rnntui saved") from None
    raw = arrays.pop("__header__", None)
    if raw is None:
        raise CheckpointError(f"not an rnntui checkpoint (no header): {p}")
    header = _parse_header(raw)
    if header is None:
        raise CheckpointError(f"checkpoint header is corrupt: {p}")
    if header.get("format") != FORMAT:
        raise CheckpointError(f"not an rnntui checkpoint: {p}")
    if header.get("version") not in READS:
        raise CheckpointError(
            f"checkpoint format version {header.get('version')} is not supported by this rnntui "
            f"(which reads versions {', '.join(map(str, READS))}): {p}"
        )
    ckpt = Checkpoint(str(p), header, arrays)
    try:
        cfg = ckpt.config.validated()
        vocab = ckpt.vocab
        H, V = cfg.hidden_size, vocab.size
        want = {f"param.{k}": shape for k, shape in layout_of(cfg.cell, V, H, cfg.layers).shapes.items()}
        if header["version"] == 1:
            want["h"] = (H, cfg.batch_size)
        else:
            want["state"] = (cfg.layers, len(make_cell(cfg.cell).state_names), cfg.batch_size, H)
        for k, shape in want.items():
            if k not in arrays or arrays[k].shape != shape:
                raise CheckpointError(f"checkpoint is inconsistent ({k} missing or of the wrong shape): {p}")
            if not np.issubdtype(arrays[k].dtype, np.floating):
                raise CheckpointError(f"checkpoint is inconsistent ({k} holds {arrays[k].dtype}, not floats): {p}")
            if not np.isfinite(arrays[k]).all():
                raise CheckpointError(f"checkpoint holds non-finite values in {k}: {p}; "
                                      "resume from an earlier checkpoint or start a new run")
        ckpt.hyper.validated()
        for key in ("step", "chars_seen"):
            if not isinstance(header.get(key), int) or header[key] < 0:
                raise CheckpointError(f"checkpoint header is invalid ({key} is {header.get(key)!r}): {p}")
    except (ConfigError, CorpusError, TypeError, KeyError, AttributeError) as e:
        raise CheckpointError(f"checkpoint header is invalid ({e}): {p}") from None
    return ckpt


def _carried(header: dict, arrays: dict) -> list[tuple]:
    """The carried state, per layer a tuple of (B, H) rows: version 1 held the one layer's h as (H, B) columns."""
    if header["version"] == 1:
        return [(np.ascontiguousarray(arrays["h"].T),)]
    return [tuple(layer) for layer in arrays["state"]]


def _count(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{name} is {v!r}, not a count")
    return v


def _number(v, name: str, *none):
    if v is None and none:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
        raise ValueError(f"{name} is {v!r}, not a finite number")
    return float(v)


def _pending(v, series: str) -> tuple[float, float, int] | None:
    """A history's partly gathered point: the sums of its steps and values, and how many it has."""
    if v is None:
        return None
    step_sum, value_sum, n = v  # a list of three
    return _number(step_sum, f"history {series}"), _number(value_sum, f"history {series}"), _count(n, "count")


def _change(entry: dict) -> Change:
    change = Change.from_dict(entry)
    _count(change.step, "change step")
    return change
