"""The wire format between a run and its viewers: versioned, length-prefixed msgpack frames, never pickle.

A frame is a 4-byte big-endian length N followed by N bytes of msgpack. Its body is a map, the
*envelope*: ``{"t": message name, field: value, …}`` (``Hello``, ``Info``, ``SnapshotPush``,
``CommandRequest``, ``InspectRequest``, ``InspectReply``, ``Bye``). Values are msgpack's own
types (None, bool, int, float, str, bytes, list, str-keyed map) or *tagged*: a two-element array
whose first element is the extension ``TAG`` naming a type and whose second is its payload —

==================  =====================================================================
``tuple``           the items (a list); lists stay lists, tuples stay tuples
``ndarray``         ``[dtype string, shape, raw bytes]`` (C order); numeric dtypes only
``npscalar``        ``[dtype string, raw bytes]``: a NumPy scalar, its dtype kept
an enum's name      its value (``RunState``, ``ChangeKind``)
a dataclass's name  a map of its fields (``Snapshot``, ``GradStats``, ``Reach`` …, every command)
``CharRNN``         ``{"chars", "cell", "layers", "dropout", "params": {name: array}}``: an inspected model
==================  =====================================================================

Only the types in :data:`REGISTRY` are built when decoding, each through its own constructor:
no code from the wire runs. What a run accepts from a viewer is narrower still (:data:`REQUEST_TYPES`:
the hello, commands and inspection requests, whose fields are checked), and so is its size
(:data:`MAX_REQUEST`). Anything malformed, oversized, truncated, of an unknown type or in the wrong
place raises :class:`ProtocolError`; the side that reads it closes that connection and nothing else.

Versions: the first frame each way is a :class:`Hello` carrying :data:`PROTOCOL_VERSION`. Its envelope
(plain fields, no tags) is the one part every version keeps, so a viewer and a run of different
versions can still tell each other so: :func:`version_mismatch` words it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from enum import Enum

import msgpack
import numpy as np

from .. import __version__
from ..cells import Saturation
from ..config import CELLS, MAX_LAYERS, HyperParams, TrainConfig
from ..derivation import Inspection
from ..model import CharRNN, layout_of
from ..monitor import GradStats, LayerReach, ParamStats, Reach
from ..recall import RecallFigures, RecallRow
from ..state import Change, ChangeKind, Sample
from ..trainer import Pause, Resume, RunState, SampleNow, SaveCheckpoint, Set, Snapshot, Stop

#: Bumped whenever a message or a type's encoding changes.
PROTOCOL_VERSION = 1
HEADER = struct.Struct(">I")
#: The largest frame a viewer reads from a run: a snapshot (≈0.5 MB with full histories) or the float64
#: weights of an inspection (8 bytes a parameter: H = 8192 needs ≈0.6 GB).
MAX_FRAME = 1 << 30
#: The largest frame a run reads from a viewer (a hello, a command, an inspection request: bytes, not megabytes).
MAX_REQUEST = 1 << 16
#: The extension type code of a tag (the name of a type, in UTF-8).
TAG = 1


class ProtocolError(Exception):
    """The bytes received are not a message of this protocol (or not one expected here); the connection ends."""


class ConnectionClosed(EOFError):
    """The other side closed the connection between two frames (a clean end, not an error)."""


def version_mismatch(theirs: int, their_software: str, *, we_are: str = "rnntui") -> str:
    """The words for a run and a viewer of different protocol versions, from the viewer's side."""
    return (f"this run speaks protocol {theirs}, this {we_are} {PROTOCOL_VERSION}: watch it with the rnntui that "
            f"started it (version {their_software}), or upgrade both to the same version")


# -- messages ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """What a viewer knows of a run besides its snapshots (fixed for the run's life)."""

    name: str
    pid: int
    corpus_path: str
    vocab: str  # the vocabulary's characters, in index order
    checkpoint_path: str | None
    config: TrainConfig
    run_dir: str | None = None  # the run's folder (runs/NAME), None for a run without one
    started: float = 0.0  # time.time() when the run started
    has_recall: bool = False  # the corpus is in recall.txt's format (the copy-loss screen has figures)
    software: str = __version__
    protocol: int = PROTOCOL_VERSION

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def of(cls, trainer, *, name: str, run_dir: str | None = None, pid: int | None = None,
           started: float | None = None) -> RunInfo:
        """The info of ``trainer`` (a :class:`~rnntui.trainer.Trainer`) served as run ``name``."""
        return cls(name=name, pid=os.getpid() if pid is None else pid, corpus_path=trainer.corpus.path,
                   vocab=trainer.corpus.vocab.chars, checkpoint_path=trainer.checkpoint_path, config=trainer.config,
                   run_dir=run_dir, started=time.time() if started is None else started,
                   has_recall=getattr(trainer, "recall", None) is not None)


@dataclass(frozen=True)
class Hello:
    """The first frame each way: the protocol version, and (from the run) whether this viewer may watch."""

    version: int
    software: str = __version__
    ok: bool = True
    error: str | None = None  # why not (another user, another version)


@dataclass(frozen=True)
class Info:
    info: RunInfo


@dataclass(frozen=True)
class SnapshotPush:
    snapshot: Snapshot


@dataclass(frozen=True)
class CommandRequest:
    command: Pause | Resume | Set | SampleNow | SaveCheckpoint | Stop


@dataclass(frozen=True)
class InspectRequest:
    id: int


@dataclass(frozen=True)
class InspectReply:
    id: int
    inspection: Inspection | None = None
    error: str | None = None


@dataclass(frozen=True)
class Bye:
    """The run closes this connection: it has ended, or this viewer broke the protocol (``reason`` says)."""

    reason: str
    ended: bool = False  # the run itself has ended (else: only this connection)


MESSAGES: dict[str, type] = {"hello": Hello, "info": Info, "snapshot": SnapshotPush, "command": CommandRequest,
                             "inspect": InspectRequest, "inspected": InspectReply, "bye": Bye}
MESSAGE_NAMES = {cls: name for name, cls in MESSAGES.items()}
COMMANDS = (Pause, Resume, Set, SampleNow, SaveCheckpoint, Stop)

# -- the codec ---------------------------------------------------------------------------------------


class _Tag:
    """A decoded tag: the name of the type whose payload follows it (a sentinel, never a result)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


def _encode_model(m: CharRNN) -> dict:
    return {"chars": m.chars, "cell": m.cell, "layers": m.layers, "dropout": m.dropout,
            "params": {k: np.ascontiguousarray(a) for k, a in m.params.items()}}


#: A model's fields; those it may leave out (the lecture's model, as protocol 1 sent it before the cells) default to
MODEL_FIELDS, MODEL_DEFAULTS = frozenset({"chars", "cell", "layers", "dropout", "params"}), {"cell": "rnn", "layers": 1,
                                                                                           "dropout": 0.0}


def _decode_model(payload) -> CharRNN:
    if not isinstance(payload, dict) or not {"chars", "params"} <= set(payload) <= MODEL_FIELDS:
        raise ProtocolError("a model is a map of chars, params, and its cell, layers and dropout")
    payload = {**MODEL_DEFAULTS, **payload}
    params, chars, cell, layers, dropout = (payload[k] for k in ("params", "chars", "cell", "layers", "dropout"))
    if cell not in CELLS or isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= MAX_LAYERS \
            or isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ProtocolError(f"a model's cell is one of {', '.join(CELLS)} with 1 to {MAX_LAYERS} layers and a "
                            "dropout in [0, 1)")
    if not isinstance(params, dict) or "v" not in params or not all(
            isinstance(p, np.ndarray) and p.dtype.kind == "f" for p in params.values()) or params["v"].ndim != 2:
        raise ProtocolError("a model's params are float arrays by name, v (V, H) among them")
    V, H = params["v"].shape
    if H < 1 or V < 1:
        raise ProtocolError("a model's parameters do not fit together (v)")
    shapes = layout_of(cell, V, H, layers).shapes
    wrong = sorted(set(shapes) ^ set(params)) + [k for k, s in shapes.items() if k in params and
                                                 (params[k].shape != s or params[k].dtype != params["v"].dtype)]
    if wrong or (chars is not None and (not isinstance(chars, str) or len(chars) != V)):
        raise ProtocolError(f"a model's parameters do not fit together ({', '.join(wrong) or 'chars'})")
    # built only once its arrays (already received, so of bounded size) have fitting shapes
    m = CharRNN(V, H, dtype=params["v"].dtype, chars=chars, cell=cell, layers=layers, dropout=float(dropout))
    for k in shapes:
        m.params[k][...] = params[k]
    return m


#: Every type a frame may carry, by its tag: dataclasses and enums built through their constructors,
#: and the few types with a codec of their own (``CUSTOM``).
REGISTRY: dict[str, type] = {cls.__name__: cls for cls in (
    RunInfo, *COMMANDS, Snapshot, HyperParams, TrainConfig, GradStats, ParamStats, Reach, RecallFigures, RecallRow,
    Sample, Change, Inspection, RunState, ChangeKind, CharRNN, LayerReach, Saturation)}
CUSTOM = {CharRNN: (_encode_model, _decode_model)}
#: What a run accepts from a viewer: these messages, and the commands (besides tuples, arrays and scalars).
REQUEST_TYPES = frozenset({"Hello", "CommandRequest", "InspectRequest", *(c.__name__ for c in COMMANDS)})
#: What a viewer accepts from a run: every registered type, and the messages a run sends after its hello.
REPLY_TYPES = frozenset({*REGISTRY, "Info", "SnapshotPush", "InspectReply", "Bye"})
_TAGS = {name: msgpack.ExtType(TAG, name.encode()) for name in (*REGISTRY, "tuple", "ndarray", "npscalar")}
_FIELDS: dict[type, tuple[str, ...]] = {}
_NUMERIC_KINDS = frozenset("biufc")
MAX_DIMS = 32


def _fields(cls) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _default(obj):
    """msgpack's hook for every value that is not exactly one of its own types (``strict_types``)."""
    if isinstance(obj, tuple):
        return [_TAGS["tuple"], list(obj)]
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(f"arrays of dtype {obj.dtype} do not go on the wire")
        a = np.ascontiguousarray(obj)
        return [_TAGS["ndarray"], [a.dtype.str, list(a.shape), memoryview(a.reshape(-1).view(np.uint8))]]
    if isinstance(obj, np.generic):
        if obj.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(f"scalars of dtype {obj.dtype} do not go on the wire")
        return [_TAGS["npscalar"], [obj.dtype.str, obj.tobytes()]]
    cls = type(obj)
    name = cls.__name__
    if REGISTRY.get(name) is not cls:
        if isinstance(obj, float):  # a float subclass of no other meaning
            return float(obj)
        raise TypeError(f"{cls.__module__}.{cls.__qualname__} is not a type of the run protocol")
    if issubclass(cls, Enum):
        return [_TAGS[name], obj.value]
    if cls in CUSTOM:
        return [_TAGS[name], CUSTOM[cls][0](obj)]
    return [_TAGS[name], {f: getattr(obj, f) for f in _fields(cls)}]


_PACKER_OPTIONS = {"default": _default, "strict_types": True, "use_bin_type": True}


def encode(obj) -> bytes:
    """``obj`` as msgpack (see the module docstring); a value of a type not in the registry raises TypeError."""
    return msgpack.packb(obj, **_PACKER_OPTIONS)


def _array(payload) -> np.ndarray:
    if not (isinstance(payload, list) and len(payload) == 3):
        raise ProtocolError("an array is [dtype, shape, bytes]")
    dtype, shape, data = payload
    if not (isinstance(dtype, str) and len(dtype) <= 8 and isinstance(shape, list) and len(shape) <= MAX_DIMS
            and isinstance(data, bytes) and all(type(n) is int and n >= 0 for n in shape)):
        raise ProtocolError("an array is [dtype, shape, bytes]")
    dt = _dtype(dtype)
    if math.prod(shape) * dt.itemsize != len(data):
        raise ProtocolError(f"an array of shape {tuple(shape)} and dtype {dt} is not {len(data)} bytes")
    return np.frombuffer(data, dt).reshape(shape).copy()  # writable, like the arrays it stands for


def _scalar(payload) -> np.generic:
    if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], str)
            and len(payload[0]) <= 8 and isinstance(payload[1], bytes)):
        raise ProtocolError("a NumPy scalar is [dtype, bytes]")
    dt = _dtype(payload[0])
    if len(payload[1]) != dt.itemsize:
        raise ProtocolError(f"a {dt} scalar is not {len(payload[1])} bytes")
    return np.frombuffer(payload[1], dt)[0]


def _dtype(text: str) -> np.dtype:
    try:
        dt = np.dtype(text)
    except (TypeError, ValueError):
        raise ProtocolError(f"unknown dtype {text!r}") from None
    if dt.kind not in _NUMERIC_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise ProtocolError(f"dtype {text!r} is not a plain numeric type")
    return dt


class _Decoder:
    """msgpack's hooks building the tagged values, restricted to the type names in ``allowed``."""

    def __init__(self, allowed: frozenset[str] | None):
        self.allowed = allowed

    def ext_hook(self, code: int, data: bytes):
        if code != TAG:
            raise ProtocolError(f"unknown extension type {code}")
        try:
            return _Tag(data.decode())
        except UnicodeDecodeError:
            raise ProtocolError("a tag is not UTF-8") from None

    def object_hook(self, mapping: dict):
        for k, v in mapping.items():
            if type(k) is _Tag or type(v) is _Tag:
                raise ProtocolError("a tag outside a tagged value")
        return mapping

    def list_hook(self, items: list):
        if len(items) == 2 and type(items[0]) is _Tag:
            if type(items[1]) is _Tag:
                raise ProtocolError("a tag outside a tagged value")
            return self.build(items[0].name, items[1])
        for x in items:
            if type(x) is _Tag:
                raise ProtocolError("a tag outside a tagged value")
        return items

    def build(self, name: str, payload):
        if name == "tuple":
            if not isinstance(payload, list):
                raise ProtocolError("a tuple's items are a list")
            return tuple(payload)
        if name == "ndarray":
            return _array(payload)
        if name == "npscalar":
            return _scalar(payload)
        cls = REGISTRY.get(name)
        if cls is None or (self.allowed is not None and name not in self.allowed):
            raise ProtocolError(f"unknown type {name!r}" if cls is None else f"a {name} is not expected here")
        if issubclass(cls, Enum):
            try:
                return cls(payload)
            except ValueError:
                raise ProtocolError(f"{payload!r} is not a {name}") from None
        if cls in CUSTOM:
            return CUSTOM[cls][1](payload)
        if not isinstance(payload, dict):
            raise ProtocolError(f"a {name}'s fields are a map")
        try:
            return cls(**payload)
        except TypeError as e:  # unknown or missing fields (of another version, or made up)
            raise ProtocolError(f"not the fields of a {name}: {e}") from None


def decode(body: bytes, *, allowed: frozenset[str] | None = None):
    """The value encoded in ``body``; ``allowed``: the only type names it may build (None: the registry)."""
    hooks = _Decoder(allowed)
    try:
        value = msgpack.unpackb(body, ext_hook=hooks.ext_hook, object_hook=hooks.object_hook,
                                list_hook=hooks.list_hook, raw=False, strict_map_key=True, use_list=True)
    except ProtocolError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError, OverflowError, MemoryError) as e:
        raise ProtocolError(f"not msgpack: {type(e).__name__}: {e}") from None
    if type(value) is _Tag:
        raise ProtocolError("a tag outside a tagged value")
    return value


# -- messages in envelopes ---------------------------------------------------------------------------


def encode_message(msg) -> bytes:
    """A message's frame: header and body."""
    name = MESSAGE_NAMES.get(type(msg))
    if name is None:
        raise TypeError(f"{type(msg).__name__} is not a message of the run protocol")
    body = encode({"t": name, **{f: getattr(msg, f) for f in _fields(type(msg))}})
    return HEADER.pack(len(body)) + body


def decode_message(body: bytes, *, allowed: frozenset[str] | None = None):
    """The message in a frame's body. ``allowed`` as for :func:`decode`: the message's own name included."""
    value = decode(body, allowed=allowed)
    if not isinstance(value, dict) or not isinstance(value.get("t"), str):
        raise ProtocolError("a message is a map with its type in 't'")
    fields = dict(value)
    cls = MESSAGES.get(fields.pop("t"))
    if cls is None or (allowed is not None and cls.__name__ not in allowed):
        raise ProtocolError(f"unknown message type {value['t']!r}" if cls is None
                            else f"a {value['t']!r} message is not expected here")
    if cls is Hello:  # the hello of any version reads: it carries the version that says what follows
        fields = {k: v for k, v in fields.items() if k in _fields(Hello)}
    try:
        msg = cls(**fields)
    except TypeError as e:
        raise ProtocolError(f"not the fields of a {value['t']!r} message: {e}") from None
    _check(msg)
    return msg


def _check(msg) -> None:
    """The fields of the messages a run receives, checked before anything acts on them."""
    if isinstance(msg, Hello):
        if type(msg.version) is not int or not isinstance(msg.software, str) or type(msg.ok) is not bool:
            raise ProtocolError("a hello's version is an int and its software a string")
    elif isinstance(msg, InspectRequest):
        if type(msg.id) is not int:
            raise ProtocolError("an inspection request's id is an int")
    elif isinstance(msg, CommandRequest):
        check_command(msg.command)


def check_command(command) -> None:
    """Raise ProtocolError unless ``command`` is one of the trainer's commands with fields of the right types
    (their values are the trainer's to judge: a refused setting is reported in the run's change log)."""
    if type(command) not in COMMANDS:
        raise ProtocolError(f"{type(command).__name__} is not a command")
    if isinstance(command, Set):
        if not isinstance(command.changes, dict) or not all(
                isinstance(k, str) and type(v) in (bool, int, float, str) for k, v in command.changes.items()):
            raise ProtocolError("a Set's changes map names to numbers or strings")
    elif isinstance(command, SaveCheckpoint):
        if command.path is not None and (not isinstance(command.path, str) or "\0" in command.path
                                         or not command.path or len(command.path) > 4096):
            raise ProtocolError("a SaveCheckpoint's path is None or a file name")
    elif isinstance(command, Stop):
        if type(command.save) is not bool:
            raise ProtocolError("a Stop's save is true or false")


# -- frames on a socket ------------------------------------------------------------------------------


def read_frame(sock: socket.socket, limit: int, *, idle: float | None = None, within: float | None = None) -> bytes:
    """The body of the next frame on ``sock`` (blocking).

    ``idle``: seconds to wait for a frame to begin (None: for ever); ``within``: seconds a frame may take
    from its first byte to its last (None: for ever). Raises :class:`ConnectionClosed` on a clean end
    between frames, :class:`ProtocolError` on a length over ``limit``, a frame cut short or too slow, and
    TimeoutError when no frame began within ``idle``.
    """
    start = None if idle is None else time.monotonic() + idle
    header, deadline = _read(sock, HEADER.size, start, within, first=True)
    (n,) = HEADER.unpack(header)
    if n > limit:
        raise ProtocolError(f"a frame of {n} bytes is over the limit of {limit}")
    if n == 0:
        raise ProtocolError("an empty frame")
    return bytes(_read(sock, n, deadline, None, first=False)[0])


def _read(sock: socket.socket, n: int, deadline: float | None, then: float | None, *,
          first: bool) -> tuple[bytearray, float | None]:
    """``n`` bytes by ``deadline`` (monotonic; None: no limit), which becomes ``then`` seconds after the first
    byte when ``then`` is given; returns them and the deadline in force at the end."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not _readable(sock, left):
                if first and got == 0:
                    raise TimeoutError("no frame began in time")
                raise ProtocolError(f"a frame cut short: {got} of {n} bytes came in time")
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            if first and got == 0:
                raise ConnectionClosed("the other side closed the connection")
            raise ProtocolError(f"a frame cut short: the connection closed after {got} of {n} bytes")
        if got == 0 and then is not None:  # begun: the rest within ``then``
            deadline = time.monotonic() + then
        got += k
    return buf, deadline


def _readable(sock: socket.socket, timeout: float) -> bool:
    try:
        ready, _, _ = select.select([sock], [], [], timeout)
    except ValueError:  # closed meanwhile
        return True  # the recv that follows reports it
    return bool(ready)


def receive(sock: socket.socket, limit: int, *, allowed: frozenset[str] | None = None, idle: float | None = None,
            within: float | None = None):
    """The next message on ``sock`` (see :func:`read_frame` and :func:`decode_message`)."""
    return decode_message(read_frame(sock, limit, idle=idle, within=within), allowed=allowed)


__all__ = [
    "COMMANDS", "MAX_FRAME", "MAX_REQUEST", "PROTOCOL_VERSION", "REGISTRY", "REPLY_TYPES", "REQUEST_TYPES", "Bye",
    "CommandRequest", "ConnectionClosed", "Hello", "Info", "InspectReply", "InspectRequest", "ProtocolError",
    "RunInfo", "SnapshotPush", "check_command", "decode", "decode_message", "encode", "encode_message",
    "read_frame", "receive", "version_mismatch",
]
