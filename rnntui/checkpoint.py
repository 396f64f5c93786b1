"""The checkpoint file format: one ``.npz`` holding arrays plus a JSON header.

Header (``__header__``, UTF-8 JSON): format name and version, vocabulary, the run's
configuration and current hyperparameters, step, data position, optimizer name and
step count, RNG state, display state, the change log (one dict per entry) and the run's id.
Arrays: ``param.<name>``, ``opt.<slot>.<name>``,
``h`` (the carried hidden state), ``monitor.x`` and ``hist.<series>.steps|values``.

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

import numpy as np

from .config import ConfigError, HyperParams, TrainConfig
from .corpus import CorpusError, Vocab

FORMAT = "rnntui-checkpoint"
VERSION = 1

#: Called (in tests) after the temporary file is written and before it replaces the old one.
_before_replace = None


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read; the message says why and what to do."""


def check_writable(path: str | os.PathLike) -> Path:
    """Fail now (not at the first save) when ``path`` cannot be written."""
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"checkpoint path is a directory: {p}; give a file name such as {p / 'run.npz'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise CheckpointError(f"checkpoint folder does not exist: {parent}; create it first (mkdir -p {parent})")
    if not parent.is_dir():
        raise CheckpointError(f"checkpoint folder is not a directory: {parent}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".rnntui-write-test-", dir=parent)
    except OSError as e:
        raise CheckpointError(f"cannot write to checkpoint folder {parent}: {e.strerror or e}; "
                              "choose a writable place") from None
    os.close(fd)
    os.unlink(tmp)
    if p.exists() and not os.access(p, os.W_OK):
        raise CheckpointError(f"checkpoint file is not writable: {p}; check its permissions")
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


def _arrays_and_header(trainer) -> tuple[dict[str, np.ndarray], dict]:
    arrays: dict[str, np.ndarray] = {}
    for k, p in trainer.model.params.items():
        arrays[f"param.{k}"] = p
    opt = trainer.optimizer
    for slot, per_param in opt.state.items():
        for k, a in per_param.items():
            arrays[f"opt.{slot}.{k}"] = a
    arrays["h"] = trainer.h
    arrays["monitor.x"] = trainer.monitor._x.astype(np.float64)
    for name, hist in trainer.history.items():
        s, v = hist.arrays()
        arrays[f"hist.{name}.steps"] = s
        arrays[f"hist.{name}.values"] = v
    header = {
        "format": FORMAT,
        "version": VERSION,
        "vocab": trainer.corpus.vocab.chars,
        "config": trainer.config.to_dict(),
        "hyper": trainer.hyper.__dict__,
        "step": trainer.step,
        "chars_seen": trainer.chars_seen,
        "elapsed": trainer.elapsed,
        "stream": trainer.stream.state(),
        "optimizer": {"name": opt.name, "t": opt.t},
        "rng": trainer.rng.bit_generator.state,
        "loss": trainer.loss,
        "loss_ema": trainer.loss_ema,
        "val_loss": trainer.val_loss,
        "val_step": trainer.val_step,
        "history_strides": {name: h.stride for name, h in trainer.history.items()},
        "samples": [[s.step, s.temperature, s.text] for s in list(trainer.samples)[-10:]],
        "corpus_path": trainer.corpus.path,
        "run_id": trainer.run_id,
        "changes": [dataclasses.asdict(c) for c in trainer.changes],
    }
    return arrays, header


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save(path: str | os.PathLike, trainer) -> Path:
    """Write ``trainer``'s full state to ``path`` atomically."""
    p = Path(path)
    arrays, header = _arrays_and_header(trainer)
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
        """A :class:`CharRNN` with this checkpoint's parameters and vocabulary."""
        from .model import PARAM_NAMES, CharRNN

        cfg = self.config
        m = CharRNN(self.vocab.size, cfg.hidden_size, dtype=np.dtype(cfg.dtype), chars=self.vocab.chars)
        for k in PARAM_NAMES:
            m.params[k][...] = self.arrays[f"param.{k}"]
        return m


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
    if header.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint format version {header.get('version')} is not supported by this rnntui "
            f"(which reads version {VERSION}): {p}"
        )
    ckpt = Checkpoint(str(p), header, arrays)
    try:
        cfg = ckpt.config.validated()
        vocab = ckpt.vocab
        H, V = cfg.hidden_size, vocab.size
        want = {"param.u": (H, V), "param.w": (H, H), "param.v": (V, H), "param.bh": (H, 1), "param.by": (V, 1),
                "h": (H, cfg.batch_size)}
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


def restore(trainer, ckpt: Checkpoint) -> None:
    """Put a checkpoint's state into a freshly built ``trainer`` of the same configuration.

    A checkpoint whose header or arrays do not fit together raises :class:`CheckpointError`.
    """
    try:
        _restore(trainer, ckpt)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as e:
        what = f"{e!r}" if isinstance(e, KeyError) else str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint is inconsistent and cannot be resumed ({what}): {ckpt.path}; "
                              "resume from another checkpoint or start a new run") from None


def _restore(trainer, ckpt: Checkpoint) -> None:
    from .optim import make_optimizer

    hd = ckpt.header
    for k, p in trainer.model.params.items():
        p[...] = ckpt.arrays[f"param.{k}"]
    # What the trainer rolls back to on divergence must be these parameters, not its fresh initialisation.
    for k, before in getattr(trainer, "_before_update", {}).items():
        np.copyto(before, trainer.model.params[k])
    if hd["optimizer"]["name"] == trainer.hyper.optimizer:
        opt = make_optimizer(hd["optimizer"]["name"], trainer.model.params, trainer.hyper.lr)
        opt.load_state_dict({
            "name": hd["optimizer"]["name"],
            "t": hd["optimizer"]["t"],
            "state": {slot: {k: _same_shape(ckpt.arrays[f"opt.{slot}.{k}"], p, f"opt.{slot}.{k}")
                             for k, p in trainer.model.params.items()} for slot in opt.slots},
        })
        trainer.optimizer = opt
    # else: resumed with another optimizer; the trainer's own (fresh) one is kept, as for a switch mid-run
    trainer.h = ckpt.arrays["h"].astype(trainer.model.dtype, copy=True)
    trainer.monitor._x = _same_shape(ckpt.arrays["monitor.x"], trainer.monitor._x, "monitor.x").astype(
        trainer.model.dtype)
    trainer.step = _count(hd["step"], "step")
    trainer.chars_seen = _count(hd["chars_seen"], "chars_seen")
    trainer.elapsed = _number(hd["elapsed"], "elapsed")
    trainer.stream.position = _count(hd["stream"]["position"], "stream position")
    trainer.stream.epoch = _count(hd["stream"]["epoch"], "epoch")
    trainer.rng.bit_generator.state = hd["rng"]
    trainer.loss, trainer.loss_ema = _number(hd["loss"], "loss", None), _number(hd["loss_ema"], "loss_ema", None)
    trainer.val_loss = _number(hd["val_loss"], "val_loss", None)
    trainer.val_step = None if hd["val_step"] is None else _count(hd["val_step"], "val_step")
    strides = hd.get("history_strides", {})
    for name, hist in trainer.history.items():
        if f"hist.{name}.steps" in ckpt.arrays:
            hist.load({"steps": ckpt.arrays[f"hist.{name}.steps"], "values": ckpt.arrays[f"hist.{name}.values"],
                       "stride": strides.get(name, 1)})
    from .trainer import Change, Sample

    trainer.samples.extend(Sample(int(s), float(t), str(x)) for s, t, x in hd.get("samples", []))
    known = {f.name for f in dataclasses.fields(Change)}  # entries are dicts: a field added later reads back
    trainer.changes.clear()
    for entry in hd.get("changes", []):
        fields = {k: v for k, v in entry.items() if k in known}
        trainer.changes.append(Change(**{**fields, "step": _count(fields.get("step"), "change step")}))
    run_id = hd.get("run_id")
    if run_id is not None:  # a checkpoint from before run ids keeps the id the trainer was given
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id is {run_id!r}, not a run id")
        trainer.run_id = run_id
    trainer.saved_step = trainer.step
    trainer.saved_path = ckpt.path


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


def _same_shape(a: np.ndarray, like: np.ndarray, name: str) -> np.ndarray:
    if a.shape != like.shape or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} has shape {a.shape} and type {a.dtype}, expected {like.shape}")
    return a
