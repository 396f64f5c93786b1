"""The checkpoint file format: one ``.npz`` holding arrays plus a JSON header.

Header (``__header__``, UTF-8 JSON): format name and version, vocabulary, the run's
configuration and current hyperparameters, step, data position, optimizer name and
step count, RNG state and display state. Arrays: ``param.<name>``, ``opt.<slot>.<name>``,
``h`` (the carried hidden state), ``monitor.x`` and ``hist.<series>.steps|values``.

Writes are atomic: the file is written under a temporary name in the same folder,
flushed to disk and renamed over the old one, so a crash mid-save leaves the
previous checkpoint intact. Resuming restores everything training depends on, so
N steps + save + resume + M steps gives exactly the parameters of N + M steps.
"""

from __future__ import annotations

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


def load(path: str | os.PathLike) -> Checkpoint:
    """Read and check a checkpoint; a file that is not ours, truncated or of another version is refused."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}; check the path given to --resume")
    if p.is_dir():
        raise CheckpointError(f"checkpoint path is a directory: {p}; give the checkpoint file")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except PermissionError:
        raise CheckpointError(f"checkpoint is not readable (permission denied): {p}") from None
    except Exception:  # noqa: BLE001 — untrusted bytes: zipfile and numpy raise a zoo of errors on them
        raise CheckpointError(f"not an rnntui checkpoint, or corrupt or truncated: {p}; "
                              "give a file written by rnntui --checkpoint") from None
    raw = arrays.pop("__header__", None)
    if raw is None:
        raise CheckpointError(f"not an rnntui checkpoint (no header): {p}")
    try:
        header = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint header is corrupt: {p}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
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
    from .trainer import Sample

    trainer.samples.extend(Sample(int(s), float(t), str(x)) for s, t, x in hd.get("samples", []))
    trainer.saved_step = trainer.step


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
