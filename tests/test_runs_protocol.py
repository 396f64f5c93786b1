"""The run protocol (rnntui.runs.protocol): real snapshots and inspections round trip exactly, and anything
that is not a message of it is refused with a ProtocolError, never executed, never half believed."""

from __future__ import annotations

import dataclasses
import math
import socket
import struct
import threading
from concurrent.futures import Future
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnntui import Corpus, HyperParams, TrainConfig, Trainer
from rnntui.derivation import Inspection
from rnntui.runs import protocol as P
from rnntui.runs.protocol import ProtocolError
from rnntui.trainer import Inspect, Pause, Resume, RunState, SampleNow, SaveCheckpoint, Set, Snapshot, Stop

DATA = Path(__file__).resolve().parent.parent / "sample_data"


def assert_same(a, b, where="value"):
    """``b`` is ``a``: the same types all the way down, equal numbers (NaN as NaN), arrays of the same dtype."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} became {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} became {b.dtype}{b.shape}"
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} became {list(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{where}: length {len(a)} became {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} became {b!r}"


def round_trip(msg):
    frame = P.encode_message(msg)
    (n,) = struct.unpack(">I", frame[:4])
    assert n == len(frame) - 4
    return P.decode_message(frame[4:])


@pytest.fixture(scope="module")
def recall_trainer() -> Trainer:
    """A trainer on recall.txt (so its snapshots have copy-loss figures) that has trained, validated and sampled."""
    corpus = Corpus.load(DATA / "recall.txt")
    cfg = TrainConfig(hidden_size=10, seq_length=8, batch_size=3, dtype="float32",
                      hyper=HyperParams(val_every=20, sample_every=15, sample_length=20))
    trainer = Trainer(corpus, cfg, checkpoint_path="/nowhere/run.npz")
    trainer.state = RunState.RUNNING
    for _ in range(60):
        trainer.train_step()
    trainer.set_hyper(lr=0.004)  # a change in the log
    return trainer


def test_a_real_snapshot_round_trips_field_for_field(recall_trainer):
    snap = recall_trainer.snapshot()
    assert snap.recall is not None and snap.samples and snap.changes and snap.grad_stats is not None and snap.reach
    assert snap.val_loss is not None and snap.history["loss"][0].size == 60
    back = round_trip(P.SnapshotPush(snap)).snapshot
    assert_same(snap, back, "snapshot")
    assert back.state is RunState.RUNNING and type(back.changes[-1].kind).__name__ == "ChangeKind"
    assert back.history["loss"][1].dtype == np.float64
    assert back.grad_stats.dh_norms.dtype == snap.grad_stats.dh_norms.dtype
    back.history["loss"][1][0] = 0.0  # arrays arrive writable, like the trainer's own copies


def test_a_snapshot_before_any_step_and_one_with_nan_figures():
    trainer = Trainer(Corpus.from_text("abcabcabd" * 40), TrainConfig(hidden_size=4, seq_length=4, batch_size=2))
    snap = trainer.snapshot()
    assert_same(snap, round_trip(P.SnapshotPush(snap)).snapshot)
    trainer.state = RunState.RUNNING
    trainer.train_step()
    nan = dataclasses.replace(trainer.snapshot(), loss=float("nan"), loss_ema=float("inf"),
                              reach=dataclasses.replace(trainer.reach, factor=math.nan, lag=None))
    assert_same(nan, round_trip(P.SnapshotPush(nan)).snapshot)


def test_an_inspection_round_trips_with_its_float64_weights(recall_trainer):
    ins = recall_trainer.inspection()
    back = round_trip(P.InspectReply(7, inspection=ins))
    assert back.id == 7 and back.error is None
    got = back.inspection
    assert isinstance(got, Inspection) and got.step == ins.step and got.sigma_max == ins.sigma_max
    for k in ("inputs", "targets", "h0"):
        assert_same(getattr(ins, k), getattr(got, k), k)
    assert_same(ins.reach, got.reach, "reach")
    assert got.model.chars == ins.model.chars and got.model.H == ins.model.H and got.model.V == ins.model.V
    for k in ins.model.params:
        assert got.model.params[k].dtype == np.float64
        np.testing.assert_array_equal(got.model.params[k], ins.model.params[k])
    # the model works: the same loss on the same batch
    assert got.model.loss(got.inputs, got.targets, got.h0)[0] == ins.model.loss(ins.inputs, ins.targets, ins.h0)[0]


def test_run_info_commands_and_the_other_messages_round_trip(recall_trainer):
    info = P.RunInfo.of(recall_trainer, name="recall-1", run_dir="/r/recall-1", pid=123, started=1.5)
    assert info.has_recall and info.vocab_size == recall_trainer.corpus.vocab.size
    for msg in (P.Info(info), P.Hello(1), P.Hello(1, ok=False, error="no"), P.Bye("the run has ended", ended=True),
                P.InspectRequest(3), P.InspectReply(3, error="ValueError: x"),
                *(P.CommandRequest(c) for c in (Pause(), Resume(), SampleNow(), SaveCheckpoint(),
                                                SaveCheckpoint("a.npz"), Stop(), Stop(save=True),
                                                Set({"lr": 0.01, "clip_mode": "none"})))):
        assert_same(msg, round_trip(msg), type(msg).__name__)


def test_values_keep_their_types():
    value = {"t": (1, 2.5, "x", None, True, b"raw"), "l": [1, [2, (3,)]], "f32": np.float32(0.1),
             "i8": np.arange(5, dtype=np.int8), "c": np.array([1 + 2j]), "big": np.ones((2, 3, 4), ">f8"),
             "empty": np.zeros((0, 3)), "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
             "view": np.arange(10.0)[::3], "bool": np.array([True, False]), "k": RunState.PAUSED}
    back = P.decode(P.encode(value))
    assert_same(value, back)
    assert back["big"].dtype.str == ">f8" and back["f32"].dtype == np.float32


def test_what_the_protocol_does_not_carry_is_refused_when_sending():
    for bad in (object(), {1, 2}, np.array([object()]), np.array(["text"]), Inspect(Future()), Snapshot):
        with pytest.raises(TypeError):
            P.encode(bad)
    with pytest.raises(TypeError):
        P.encode_message({"t": "hello"})


# -- decoding refuses ---------------------------------------------------------------------------


def tagged(name, payload):
    return [msgpack.ExtType(P.TAG, name.encode()), payload]


def body(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


BAD_BODIES = {
    "garbage": b"\xc1\xff\x00garbage",
    "truncated msgpack": P.encode({"t": "hello", "version": 1})[:-3],
    "not a map": body([1, 2, 3]),
    "no type": body({"version": 1}),
    "unknown message type": body({"t": "format_disk", "now": True}),
    "unknown tag": body({"t": "command", "command": tagged("os.system", "rm -rf /")}),
    "unknown extension code": body({"t": "inspect", "id": msgpack.ExtType(42, b"x")}),
    "a stray tag": body({"t": "inspect", "id": msgpack.ExtType(P.TAG, b"tuple")}),
    "a tag in a long list": body({"t": "inspect", "id": [msgpack.ExtType(P.TAG, b"tuple"), 1, 2]}),
    "a tag as a map key": body({"t": "inspect", "id": {msgpack.ExtType(P.TAG, b"x"): 1}}),
    "a tag as a payload": body({"t": "inspect", "id": [msgpack.ExtType(P.TAG, b"tuple"),
                                                      msgpack.ExtType(P.TAG, b"tuple")]}),
    "unknown field": body({"t": "inspect", "id": 1, "extra": 2}),
    "missing field": body({"t": "inspect"}),
    "wrong field type": body({"t": "inspect", "id": "one"}),
    "a command of no type": body({"t": "command", "command": 5}),
    "a set with a number as a name": body({"t": "command", "command": tagged("Set", {"changes": {1: 2}})}),
    "a set with a list as a value": body({"t": "command", "command": tagged("Set", {"changes": {"lr": [1]}})}),
    "a set of no map": body({"t": "command", "command": tagged("Set", {"changes": "lr"})}),
    "a stop with a string": body({"t": "command", "command": tagged("Stop", {"save": "yes"})}),
    "a save to a NUL path": body({"t": "command", "command": tagged("SaveCheckpoint", {"path": "a\0b"})}),
    "a snapshot from a viewer": body({"t": "snapshot", "snapshot": None}),
    "an object array": body({"t": "inspect", "id": tagged("ndarray", ["|O", [1], b"\0" * 8])}),
    "a structured array": body({"t": "inspect", "id": tagged("ndarray", ["V8", [1], b"\0" * 8])}),
    "an array of the wrong size": body({"t": "inspect", "id": tagged("ndarray", ["<f8", [1000000], b"\0" * 8])}),
    "an array of a negative shape": body({"t": "inspect", "id": tagged("ndarray", ["<f8", [-1], b""])}),
    "a dtype that is not one": body({"t": "inspect", "id": tagged("ndarray", ["zz", [1], b"\0"])}),
    "an enum value it has not": body({"t": "inspect", "id": tagged("RunState", "exploded")}),
    "a tuple of no list": body({"t": "inspect", "id": tagged("tuple", 5)}),
    "a model in a request": body({"t": "inspect", "id": tagged("CharRNN", {"chars": "ab", "params": {}})}),
    "a deep nest": b"\x91" * 100_000 + b"\x01",
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_a_run_refuses_what_is_not_a_request(name):
    with pytest.raises(ProtocolError):
        P.decode_message(BAD_BODIES[name], allowed=P.REQUEST_TYPES)


def packed(value) -> bytes:
    """``value`` with its arrays encoded as the protocol does, tags built by hand."""
    return msgpack.packb(value, default=P._default, strict_types=True)


def test_a_viewer_refuses_models_that_do_not_fit_and_a_request_in_place_of_a_reply():
    params = {"u": np.zeros((3, 2)), "w": np.zeros((3, 3)), "v": np.zeros((2, 3)), "bh": np.zeros((3, 1)),
              "by": np.zeros((2, 1))}
    assert P.decode(packed(tagged("CharRNN", {"chars": "ab", "params": params}))).H == 3
    for change in ({"w": np.zeros((4, 4))}, {"by": np.zeros((2, 1), np.int64)}, {"u": np.zeros(3)}, {"x": 1}):
        with pytest.raises(ProtocolError):
            P.decode(packed(tagged("CharRNN", {"chars": "ab", "params": {**params, **change}})))
    with pytest.raises(ProtocolError):
        P.decode(packed(tagged("CharRNN", {"chars": "abc", "params": params})))
    with pytest.raises(ProtocolError):
        P.decode_message(body({"t": "command", "command": None}), allowed=P.REPLY_TYPES)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_refused_or_read_never_anything_else(data):
    try:
        P.decode_message(data, allowed=P.REQUEST_TYPES)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.integers(0, 59))
def test_a_valid_frame_with_bytes_changed_is_refused_or_read(noise, at):
    frame = bytearray(P.encode_message(P.CommandRequest(Set({"lr": 0.01, "clip": 3.0}))))[4:]
    at = at % len(frame)
    frame[at:at + len(noise)] = noise
    try:
        msg = P.decode_message(bytes(frame), allowed=P.REQUEST_TYPES)
    except ProtocolError:
        return
    assert type(msg) in (P.CommandRequest, P.InspectRequest, P.Hello)


def test_a_hello_of_another_version_reads_and_says_so():
    later = body({"t": "hello", "version": 2, "software": "0.9.0", "ok": True, "error": None, "features": ["x"]})
    hello = P.decode_message(later)
    assert hello == P.Hello(2, "0.9.0")
    assert P.version_mismatch(2, "0.9.0").startswith(f"this run speaks protocol 2, this rnntui {P.PROTOCOL_VERSION}:")


# -- frames on a socket -----------------------------------------------------------------------------


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_frames_are_read_whole_across_many_small_writes(pair):
    a, b = pair
    frame = P.encode_message(P.InspectRequest(5)) + P.encode_message(P.CommandRequest(Pause()))

    def dribble():
        for i in range(len(frame)):
            a.send(frame[i:i + 1])

    t = threading.Thread(target=dribble)
    t.start()
    assert P.receive(b, P.MAX_REQUEST, within=5) == P.InspectRequest(5)
    assert P.receive(b, P.MAX_REQUEST, within=5) == P.CommandRequest(Pause())
    t.join()
    a.close()
    with pytest.raises(P.ConnectionClosed):
        P.read_frame(b, P.MAX_REQUEST)


def test_a_huge_length_prefix_is_refused_before_anything_is_read(pair):
    a, b = pair
    a.sendall(struct.pack(">I", 0xFFFFFFFF))
    with pytest.raises(ProtocolError, match="over the limit"):
        P.read_frame(b, P.MAX_REQUEST)
    a.sendall(struct.pack(">I", P.MAX_REQUEST + 1))
    with pytest.raises(ProtocolError, match="over the limit"):
        P.read_frame(b, P.MAX_REQUEST)
    a.sendall(struct.pack(">I", 0))
    with pytest.raises(ProtocolError, match="empty"):
        P.read_frame(b, P.MAX_REQUEST)


def test_half_a_frame_then_the_end_is_refused(pair):
    a, b = pair
    frame = P.encode_message(P.InspectRequest(5))
    a.sendall(frame[: len(frame) // 2])
    a.close()
    with pytest.raises(ProtocolError, match="cut short"):
        P.read_frame(b, P.MAX_REQUEST)


def test_half_a_header_then_the_end_is_refused(pair):
    a, b = pair
    a.sendall(b"\x00\x00")
    a.close()
    with pytest.raises(ProtocolError, match="cut short"):
        P.read_frame(b, P.MAX_REQUEST)


def test_a_frame_begun_and_not_finished_in_time_is_refused(pair):
    a, b = pair
    frame = P.encode_message(P.InspectRequest(5))
    a.sendall(frame[:6])
    with pytest.raises(ProtocolError, match="in time"):
        P.read_frame(b, P.MAX_REQUEST, within=0.2)
    with pytest.raises(TimeoutError):  # and one that never begins, when a beginning is awaited
        P.read_frame(b, P.MAX_REQUEST, idle=0.1)
