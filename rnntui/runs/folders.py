"""Run folders: one per run under ``$RNNTUI_HOME/runs/NAME/``, with its record, lock, files and socket.

``$RNNTUI_HOME`` defaults to the XDG state directory (``~/.local/state/rnntui`` on Linux). A run's folder
(mode 0700) holds

``run.json``        its record (:data:`FORMAT`): name, pid, host, corpus, configuration, start time, socket
                    path, its files; ``status`` (the figures at its last save) and ``end`` (how it ended),
                    each written when they change, atomically (a temporary file renamed over it)
``lock``            held (``flock``) by the run's process for as long as it lives: a run whose lock is free
                    and whose record has no ``end`` has died (killed, out of memory, power cut)
``checkpoint.npz``  its own checkpoint; ``metrics.jsonl`` its figures; ``log.txt`` what it printed
``socket``          where it serves its viewers, unless that path would be longer than a Unix socket's
                    limit (~107 bytes): then the socket is in a short per-user runtime directory
                    (``$XDG_RUNTIME_DIR/rnntui/``, else ``/tmp/rnntui-UID/``), and ``run.json`` says where.

Names are short and unique: the corpus's stem and a counter (``persuasion-1``, ``persuasion-2`` …), or
one given; a name taken by a run, live or not, is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from .. import __version__
from ..checkpoint import header_of
from . import protocol as P

#: The version of run.json's layout.
FORMAT = 1
RECORD, LOCK, CHECKPOINT, METRICS, LOG, SOCKET = "run.json", "lock", "checkpoint.npz", "metrics.jsonl", "log.txt", \
    "socket"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: The longest socket path used (the kernel's limit is 107 bytes and a NUL).
SOCKET_PATH_MAX = 100
#: How long taking a run's lock may wait for a lister that tests it at that moment.
LOCK_WAIT = 1.0


class RunFolderError(Exception):
    """A run folder cannot be made or used as asked; the message names the problem and the way out."""


def home() -> Path:
    """``$RNNTUI_HOME``, else the XDG state directory of rnntui (``~/.local/state/rnntui``)."""
    given = os.environ.get("RNNTUI_HOME")
    return Path(given).expanduser() if given else platformdirs.user_state_path("rnntui")


def runs_root(base: str | os.PathLike | None = None) -> Path:
    return Path(base if base is not None else home()) / "runs"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise RunFolderError(f"{name!r} is not a run name: use 1 to 64 letters, digits, '.', '_' or '-', "
                             "beginning with a letter or digit")
    return name


def name_stem(corpus_path: str | os.PathLike) -> str:
    """The corpus file's stem as the first part of a run name (``Pride & Prejudice.txt`` → ``Pride-Prejudice``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(corpus_path).stem).strip("-._")[:48]
    return stem or "run"


def secure_dir(path: str | os.PathLike) -> Path:
    """``path`` as a directory of this user's with mode 0700 (made, with its parents, when missing; tightened
    when looser). One that is a symbolic link, not a directory, or another user's raises RunFolderError."""
    p = Path(path)
    try:
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(p)
    except OSError as e:
        raise RunFolderError(f"cannot make the directory {p}: {e.strerror or e}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise RunFolderError(f"{p} is not a directory (a link or a file); remove it")
    if st.st_uid != os.getuid():
        raise RunFolderError(f"{p} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}); remove it, or set "
                             "RNNTUI_HOME to a folder of yours")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(p, 0o700)
    return p


def runtime_dir() -> Path:
    """A short private directory for sockets: ``$XDG_RUNTIME_DIR/rnntui`` when that runtime directory is this
    user's, else ``/tmp/rnntui-UID`` (made 0700; refused if someone else made it)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        try:
            st = os.stat(xdg)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and len(os.fsencode(xdg)) < 60:
                return secure_dir(Path(xdg) / "rnntui")
        except (OSError, RunFolderError):
            pass
    return secure_dir(f"/tmp/rnntui-{os.getuid()}")


def socket_path_for(folder: str | os.PathLike, name: str) -> Path:
    """Where the run in ``folder`` serves: ``folder/socket``, or a short runtime path when that is too long."""
    here = Path(folder) / SOCKET
    if len(os.fsencode(here)) <= SOCKET_PATH_MAX:
        return here
    digest = hashlib.sha256(os.fsencode(Path(folder).resolve())).hexdigest()[:12]
    short = runtime_dir() / f"{name[:40]}-{digest}.sock"
    if len(os.fsencode(short)) <= SOCKET_PATH_MAX:
        return short
    return secure_dir(f"/tmp/rnntui-{os.getuid()}") / f"{digest}.sock"


def write_json(path: str | os.PathLike, data: dict) -> None:
    """``data`` as JSON at ``path``, atomically: a reader sees the old file or the new one, whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself, on disk
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_record(folder: str | os.PathLike) -> dict | None:
    """A run folder's run.json, None when it is missing or unreadable."""
    try:
        with open(Path(folder) / RECORD, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def lock_held(folder: str | os.PathLike) -> bool:
    """Whether a live process holds the run's lock (its run is going on)."""
    try:
        fd = os.open(Path(folder) / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # (and with it the shared lock just taken)
    return False


def _lock(folder: Path) -> int:
    """This process's exclusive hold on ``folder``'s lock (waits LOCK_WAIT for a lister testing it)."""
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise
            time.sleep(0.02)


def status_of(snap) -> dict:
    """A snapshot's figures as run.json keeps them (``status``, ``end``) and ``rnntui runs`` shows them."""
    return {"state": str(snap.state), "step": snap.step, "loss": snap.loss, "val_loss": snap.val_loss,
            "chars_per_sec": snap.chars_per_sec, "saved_step": snap.saved_step,
            "saved_path": snap.saved_path or (snap.checkpoint_path if snap.saved_step is not None else None),
            "time": time.time()}


class RunFolder:
    """A run's folder, held by this process for the run's life (its lock); see the module docstring.

    Make one with :meth:`create` (a new run) or :meth:`reopen` (a run continued); :meth:`release` (or the
    end of a ``with`` block) lets go of it. Only the process holding it writes its run.json."""

    def __init__(self, path: Path, fd: int):
        self.path = Path(path)
        self.name = self.path.name
        self._fd: int | None = fd

    # -- making one ----------------------------------------------------------------------
    @classmethod
    def create(cls, corpus_path: str | os.PathLike, *, name: str | None = None,
               base: str | os.PathLike | None = None) -> RunFolder:
        """A new run's folder: named ``name`` (refused when taken), else the corpus's stem and the next free number."""
        root = secure_dir(runs_root(base))
        if name is not None:
            check_name(name)
            try:
                os.mkdir(root / name, 0o700)
            except FileExistsError:
                raise RunFolderError(_taken(root / name)) from None
            except OSError as e:
                raise RunFolderError(f"cannot make the run folder {root / name}: {e.strerror or e}") from None
            return cls._claim(root / name)
        stem = name_stem(corpus_path)
        n = 1 + max((int(m.group(1)) for p in _listdir(root)
                     if (m := re.fullmatch(re.escape(stem) + r"-(\d{1,9})", p.name))), default=0)
        while True:
            try:
                os.mkdir(root / f"{stem}-{n}", 0o700)
                return cls._claim(root / f"{stem}-{n}")
            except FileExistsError:  # another run took it meanwhile
                n += 1
            except OSError as e:
                raise RunFolderError(f"cannot make a run folder in {root}: {e.strerror or e}") from None

    @classmethod
    def reopen(cls, name: str, *, base: str | os.PathLike | None = None) -> RunFolder:
        """The folder of run ``name``, to go on with it (``--resume NAME``); refused while that run lives."""
        check_name(name)
        folder = runs_root(base) / name
        if not (folder / RECORD).is_file() and not (folder / LOCK).exists():
            raise RunFolderError(f"there is no run named {name} in {runs_root(base)}; `rnntui runs` lists them")
        return cls._claim(folder)

    @classmethod
    def _claim(cls, folder: Path) -> RunFolder:
        try:
            fd = _lock(folder)
        except BlockingIOError:
            raise RunFolderError(_taken(folder)) from None
        except OSError as e:
            raise RunFolderError(f"cannot lock the run folder {folder}: {e.strerror or e}") from None
        return cls(folder, fd)

    @classmethod
    def adopt(cls, path: str | os.PathLike, fd: int) -> RunFolder:
        """In a run's own process: the folder whose lock the process that started it handed over (``fd``,
        from :meth:`hand_over`, inherited: the lock goes with the open file, not the process)."""
        os.set_inheritable(fd, False)
        return cls(Path(path), fd)

    def hand_over(self) -> int:
        """The lock's file descriptor, made inheritable for the process that will run in this folder
        (``subprocess.Popen(..., pass_fds=(fd,))``); call :meth:`release` here once that process has started."""
        if self._fd is None:
            raise RunFolderError(f"the run folder {self.path} is not held")
        os.set_inheritable(self._fd, True)
        return self._fd

    def release(self) -> None:
        """Let go of the folder (its lock stays held by a process it was handed over to)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- its files -------------------------------------------------------------------------
    record_path = property(lambda self: self.path / RECORD)
    checkpoint_path = property(lambda self: self.path / CHECKPOINT)
    metrics_path = property(lambda self: self.path / METRICS)
    log_path = property(lambda self: self.path / LOG)

    @property
    def socket_path(self) -> Path:
        return socket_path_for(self.path, self.name)

    def record(self) -> dict:
        return read_record(self.path) or {}

    def start(self, corpus_path: str | os.PathLike, config, *, pid: int | None = None, **extra) -> dict:
        """Write run.json for a run (first or continued) of ``config`` on ``corpus_path`` by process ``pid``
        (default: this one). A continued run keeps its first start time and records when it went on."""
        before = self.record()
        now = time.time()
        record = {
            "format": FORMAT, "name": self.name, "pid": os.getpid() if pid is None else pid,
            "host": socket.gethostname(), "corpus": os.path.abspath(corpus_path),
            "config": config.to_dict() if hasattr(config, "to_dict") else config,
            "started": before.get("started", now), "socket": str(self.socket_path),
            "checkpoint": str(self.checkpoint_path), "metrics": str(self.metrics_path), "log": str(self.log_path),
            "rnntui": __version__, "protocol": P.PROTOCOL_VERSION,
            "resumed": [*before.get("resumed", []), now] if before else [],
            "status": before.get("status"), "end": None, **extra,
        }
        write_json(self.record_path, record)
        return record

    def update(self, **fields) -> dict:
        record = {**self.record(), **fields}
        write_json(self.record_path, record)
        return record

    def note_status(self, snap) -> dict:
        """Keep ``snap``'s figures (at a save: what is left if the run dies)."""
        return self.update(status=status_of(snap))

    def mark_end(self, snap) -> dict:
        """The run has ended as ``snap`` says (finished, stopped …): no longer a run that died."""
        figures = status_of(snap)
        return self.update(status=figures, end=figures)


def _listdir(root: Path) -> list[Path]:
    try:
        return [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []


def _taken(folder: Path) -> str:
    entry = RunEntry.of(folder)
    if entry.alive:
        pid = (entry.record or {}).get("pid")
        return (f"a run named {entry.name} is already running" + (f" (pid {pid})" if pid else "")
                + f"; watch it with `rnntui watch {entry.name}`, or choose another --name")
    return (f"a run named {entry.name} already exists ({entry.state}); go on with it with --resume {entry.name}, "
            "or choose another --name")


@dataclass(frozen=True)
class RunEntry:
    """A run folder as a lister sees it (nothing held)."""

    name: str
    path: Path
    record: dict | None
    alive: bool

    @classmethod
    def of(cls, folder: str | os.PathLike) -> RunEntry:
        folder = Path(folder)
        return cls(folder.name, folder, read_record(folder), lock_held(folder))

    @property
    def state(self) -> str:
        """``running`` while its process lives (what it is doing is in its snapshots); else how it ended
        (``finished``, ``stopped``, …), or ``died`` when its process ended without saying so."""
        if self.alive:
            return "running"
        end = (self.record or {}).get("end")
        return str(end.get("state") or "stopped") if isinstance(end, dict) else "died"

    @property
    def socket_path(self) -> str | None:
        return (self.record or {}).get("socket")

    @property
    def started(self) -> float | None:
        value = (self.record or {}).get("started")
        return float(value) if isinstance(value, int | float) else None

    def row(self, snap=None, *, now: float | None = None) -> dict:
        """What ``rnntui runs`` shows of it: from ``snap`` (the live run's snapshot) when given, else from
        its record (the figures of its end, or of its last save when it died)."""
        rec = self.record or {}
        figures = status_of(snap) if snap is not None else (rec.get("end") or rec.get("status") or {})
        started = self.started
        now = time.time() if now is None else now
        state = str(snap.state) if snap is not None else self.state  # (a live run that did not answer: running)
        if state == "died":  # it may have saved once more after its record was written: the file says
            figures = {**figures, **_saved_in(figures.get("saved_path") or rec.get("checkpoint"))}
            if figures.get("saved_step") is not None and (figures.get("step") or 0) < figures["saved_step"]:
                figures["step"] = figures["saved_step"]
        return {"name": self.name, "state": state, "step": figures.get("step"), "loss": figures.get("loss"),
                "val_loss": figures.get("val_loss"), "chars_per_sec": figures.get("chars_per_sec"),
                "age": None if started is None else max(0.0, now - started), "started": started,
                "corpus": rec.get("corpus"), "checkpoint": figures.get("saved_path") or rec.get("checkpoint"),
                "saved_step": figures.get("saved_step"), "pid": rec.get("pid"), "socket": rec.get("socket"),
                "path": str(self.path)}


def _saved_in(path: str | None) -> dict:
    """``saved_step``/``saved_path`` of the checkpoint at ``path``, read from its header ({} when none is there)."""
    header = header_of(path) if path else None
    step = header.get("step") if header else None
    return {"saved_step": step, "saved_path": path} if isinstance(step, int) else {}


def list_runs(base: str | os.PathLike | None = None) -> list[RunEntry]:
    """Every run folder, oldest first."""
    entries = [RunEntry.of(p) for p in _listdir(runs_root(base))]
    return sorted(entries, key=lambda e: (e.started if e.started is not None else float("inf"), e.name))


def find_run(name: str, base: str | os.PathLike | None = None) -> RunEntry:
    check_name(name)
    folder = runs_root(base) / name
    if not folder.is_dir():
        raise RunFolderError(f"there is no run named {name} in {runs_root(base)}; `rnntui runs` lists them")
    return RunEntry.of(folder)


def latest_live(base: str | os.PathLike | None = None) -> RunEntry | None:
    """The live run started last (``rnntui watch`` without a name), None when none lives."""
    live = [e for e in list_runs(base) if e.alive]
    return live[-1] if live else None


__all__ = ["FORMAT", "RunEntry", "RunFolder", "RunFolderError", "check_name", "find_run", "home", "latest_live",
           "list_runs", "lock_held", "name_stem", "read_record", "runs_root", "runtime_dir", "secure_dir",
           "socket_path_for", "status_of", "write_json"]
