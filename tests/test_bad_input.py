"""Bad input: every mistake gets one line ``rnntui: error: …``, exit code 2, no traceback,
and nothing written (no metrics file, no checkpoint, no temporary file).

Complements tests/test_cli.py (which covers the first cases) with every numeric option out of
range, NaN and infinite, unreadable, non-regular, oversized and changing corpora, huge vocabularies,
CRLF, corrupt and inconsistent checkpoints, vocabulary mismatches and unwritable destinations.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import zipfile

import numpy as np
import pytest

from rnntui import corpus as corpus_module
from rnntui.checkpoint import load as load_checkpoint
from rnntui.cli import RESUME_FIXED, run, train
from rnntui.config import TrainConfig
from rnntui.corpus import CorpusError, read_text

SMALL = ["--hidden-size", "8", "--batch-size", "2", "--seq-length", "8"]


def _one_line_error(capsys, rc, *words) -> str:
    cap = capsys.readouterr()
    assert rc == 2, cap.err
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    assert lines[0].startswith("rnntui: error: "), lines[0]
    assert "Traceback" not in cap.err + cap.out
    assert "training " not in cap.out, "refused input must not start training"
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def work(tmp_path, monkeypatch, text):
    """An empty working folder (the run's output lands here) and a good corpus outside it."""
    out = tmp_path / "out"
    out.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    good = src / "good.txt"
    good.write_text(text, encoding="utf-8")
    monkeypatch.chdir(out)
    return out, good


def _refuse(capsys, work, extra, *words, corpus=None):
    """Run with --checkpoint and --metrics into the working folder; the folder must stay empty."""
    out, good = work
    argv = [str(corpus or good), "--headless", "--max-steps", "2", *SMALL,
            "--checkpoint", str(out / "c.npz"), "--metrics", str(out / "m.jsonl"), *extra]
    line = _one_line_error(capsys, run(argv), *words)
    assert sorted(os.listdir(out)) == [], "nothing may be written when refusing"
    return line


# -- every numeric option out of range, NaN and infinite --------------------------------------------------

BAD_OPTIONS = [
    ("--hidden-size", "0", "hidden size"), ("--hidden-size", "-1", "hidden size"),
    ("--hidden-size", "8193", "hidden size"), ("--hidden-size", "nan", "--hidden-size"),
    ("--hidden-size", "1.5", "--hidden-size"),
    ("--seq-length", "0", "seq length"), ("--seq-length", "100001", "seq length"), ("--seq-length", "inf", "--seq"),
    ("--batch-size", "0", "batch size"), ("--batch-size", "-3", "batch size"), ("--batch-size", "x", "--batch"),
    ("--lr", "0", "learning rate"), ("--lr", "-1e-3", "learning rate"), ("--lr", "nan", "finite"),
    ("--lr", "inf", "finite"), ("--lr", "-inf", "finite"), ("--lr", "1e9", "at most"), ("--lr", "fast", "--lr"),
    ("--clip", "0", "clip"), ("--clip", "-5", "clip"), ("--clip", "nan", "finite"), ("--clip", "inf", "finite"),
    ("--clip", "-inf", "finite"),
    ("--temperature", "-0.1", "temperature"), ("--temperature", "nan", "finite"),
    ("--temperature", "inf", "finite"), ("--temperature", "101", "temperature"),
    ("--sample-every", "-1", "sample interval"), ("--sample-every", "nan", "--sample-every"),
    ("--sample-length", "0", "sample length"), ("--sample-length", "10001", "sample length"),
    ("--val-every", "-1", "validation interval"), ("--val-every", "1e400", "--val-every"),
    ("--val-fraction", "nan", "finite"), ("--val-fraction", "inf", "finite"), ("--val-fraction", "-0.1", "val"),
    ("--val-fraction", "0.9", "val fraction"),
    ("--max-steps", "-1", "--max-steps"), ("--max-steps", "nan", "--max-steps"),
    ("--checkpoint-every", "-1", "--checkpoint-every"), ("--checkpoint-every", "often", "--checkpoint-every"),
    ("--checkpoint-every", "nans", "--checkpoint-every"), ("--checkpoint-every", "infm", "--checkpoint-every"),
    ("--checkpoint-every", "1e999s", "--checkpoint-every"), ("--checkpoint-every", "0.2s", "at least 1 second"),
    ("--checkpoint-every", "2.5", "--checkpoint-every"),
    ("--log-every", "0", "--log-every"), ("--log-every", "-2", "--log-every"),
    ("--seed", "-1", "seed"), ("--seed", "4294967296", "seed"), ("--seed", "nan", "--seed"),
    ("--optimizer", "lbfgs", "--optimizer"), ("--clip-mode", "sometimes", "--clip-mode"),
    ("--init", "zeros", "--init"), ("--dtype", "float16", "--dtype"),
    ("--forget-bias", "nan", "--forget-bias"), ("--forget-bias", "inf", "--forget-bias"),
    ("--forget-bias", "open", "--forget-bias"),
]


@pytest.mark.parametrize(("option", "value", "word"), BAD_OPTIONS, ids=[f"{o}={v}" for o, v, _ in BAD_OPTIONS])
def test_every_option_out_of_range(capsys, work, option, value, word):
    _refuse(capsys, work, [option, value], word)


def test_checkpoint_every_saves_into_the_runs_own_checkpoint(capsys, work, runs_home):
    """Every run has a checkpoint of its own (its folder's), so --checkpoint-every needs no --checkpoint."""
    out, good = work
    assert run([str(good), "--headless", "--max-steps", "4", *SMALL, "--checkpoint-every", "2", "--name", "e"]) == 0
    assert f"checkpoint saved to {runs_home / 'runs' / 'e' / 'checkpoint.npz'}" in capsys.readouterr().out
    assert os.listdir(out) == []  # (nothing in the working folder)


@pytest.mark.parametrize(("every", "steps", "seconds"), [("0", 0, 0.0), ("500", 500, 0.0), ("30s", 0, 30.0),
                                                        ("5m", 0, 300.0), ("1.5h", 0, 5400.0), (" 2M ", 0, 120.0)])
def test_checkpoint_every_accepts_steps_and_time(every, steps, seconds):
    from rnntui.cli import parse_interval

    assert parse_interval(every) == (steps, seconds)


# -- corpus problems ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "words"), [
    (b"", ["empty"]),
    (b" \n\t\r\n  \xe3\x80\x80", ["only whitespace"]),  # includes U+3000, an ideographic space
    (b"hello\x00world" * 20, ["binary", "NUL byte at offset 5"]),
    (b"caf\xe9 au lait, " * 10, ["not valid UTF-8", "byte offset 3", "0xe9"]),
    (b"plenty of text here " * 10 + "中".encode()[:2], ["ends inside a multi-byte", "byte offset 200"]),
    (b"too short", ["needs at least 26"]),
])
def test_bad_corpus_contents(capsys, work, content, words):
    out, _ = work
    bad = out.parent / "src" / "bad.txt"
    bad.write_bytes(content)
    extra = ["--seq-length", "25"] if content == b"too short" else []
    _refuse(capsys, work, extra, *words, corpus=bad)


def test_missing_directory_unreadable_corpus(capsys, work, monkeypatch):
    out, good = work
    _refuse(capsys, work, [], "not found", corpus=out.parent / "missing.txt")
    _refuse(capsys, work, [], "directory", corpus=out.parent / "src")
    real_open = open

    def denied(path, *a, **k):  # root may read anything, so refuse the way a 000 file would
        if str(path) == str(good):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(corpus_module, "open", denied, raising=False)
    _refuse(capsys, work, [], "not readable", "permission denied")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_device_is_refused_not_read_forever(capsys, work):
    _refuse(capsys, work, [], "not a regular file", corpus="/dev/zero")


def test_oversized_corpus_is_refused_before_reading(capsys, work, monkeypatch):
    monkeypatch.setattr(corpus_module, "MAX_CORPUS_BYTES", 1000)
    _refuse(capsys, work, [], "MiB", "excerpt")


@pytest.mark.parametrize(("change", "words"), [
    ("truncate", "empty"),
    ("delete", "disappeared"),
    ("half-character", "ends inside a multi-byte character"),
    ("to-directory", "directory"),
])
def test_corpus_changing_between_check_and_read(tmp_path, monkeypatch, change, words):
    """The file is stat'ed, then read once; whatever happens in between gives a clean CorpusError."""
    p = tmp_path / "c.txt"
    p.write_text("ünïcödé text " * 100, encoding="utf-8")
    real_open = open

    def racing_open(path, *a, **k):
        if change == "truncate":
            p.write_bytes(b"")
        elif change == "delete":
            p.unlink()
        elif change == "half-character":
            p.write_bytes("abc ü".encode()[:-1])
        elif change == "to-directory":
            p.unlink()
            p.mkdir()
        return real_open(path, *a, **k)

    monkeypatch.setattr(corpus_module, "open", racing_open, raising=False)
    with pytest.raises(CorpusError, match=words) as e:
        read_text(p)
    assert "\n" not in str(e.value)


def test_corpus_rewritten_by_a_racing_writer(tmp_path):
    """Another process keeps rewriting the file (sometimes empty, half-written or binary) while we read it."""
    p = tmp_path / "c.txt"
    p.write_text("start " * 50)
    contents = [b"", "ünïcödé ".encode() * 40, b"x" * 300, "中文".encode() * 50 + b"\xe4", b"a\x00b" * 10, b"   \n"]
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            with open(p, "wb") as f:  # truncate, then write in two pieces: readers can see either half
                data = contents[i % len(contents)]
                f.write(data[: len(data) // 2])
                f.flush()
                f.write(data[len(data) // 2:])
            i += 1

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    outcomes = set()
    try:
        for _ in range(400):
            try:
                text = read_text(p)
                assert text.strip()
                outcomes.add("text")
            except CorpusError as e:
                assert "\n" not in str(e)
                outcomes.add(str(e).split(":")[0])
    finally:
        stop.set()
        t.join(5)
    assert outcomes  # every read ended in text or a clean refusal; none raised anything else


def test_huge_vocabulary_trains_with_a_warning(capsys, work):
    out, _ = work
    rng = np.random.default_rng(0)
    chars = np.array([chr(0x4E00 + i) for i in range(5000)])
    cjk = out.parent / "src" / "cjk.txt"
    cjk.write_text("".join(rng.permutation(np.concatenate([chars, chars, chars]))), encoding="utf-8")
    rc = run([str(cjk), "--headless", "--max-steps", "3", "--hidden-size", "8", "--batch-size", "2",
              "--seq-length", "10", "--checkpoint", str(out / "c.npz")])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "warning: 5000 distinct characters" in cap.err and "slow" in cap.err
    assert "done: 3 steps" in cap.out
    ck = load_checkpoint(out / "c.npz")
    assert ck.vocab.size == 5000
    assert all(np.isfinite(a).all() for k, a in ck.arrays.items() if k.startswith("param."))


def test_crlf_corpus_trains_on_lf(capsys, work):
    out, _ = work
    crlf = out.parent / "src" / "crlf.txt"
    crlf.write_bytes(b"the quick brown fox\r\njumps over\r\n" * 30 + b"old mac\rmac")
    rc = run([str(crlf), "--headless", "--max-steps", "2", *SMALL, "--checkpoint", str(out / "c.npz")])
    assert rc == 0, capsys.readouterr().err
    vocab = load_checkpoint(out / "c.npz").vocab.chars
    assert "\n" in vocab and "\r" not in vocab


def test_not_enough_memory_for_the_model(capsys, work, monkeypatch):
    import rnntui.trainer as trainer_module

    def no_memory(*a, **k):
        raise MemoryError("Unable to allocate 256. MiB")

    monkeypatch.setattr(trainer_module, "CharRNN", no_memory)
    _refuse(capsys, work, [], "not enough memory", "--hidden-size")


# -- destinations -----------------------------------------------------------------------------------------


def test_unwritable_destinations_fail_before_training(capsys, work, monkeypatch):
    out, good = work
    _refuse(capsys, work, ["--checkpoint", str(out / "no" / "such" / "c.npz")], "does not exist", "mkdir -p")
    _refuse(capsys, work, ["--checkpoint", str(out)], "is a directory")
    _refuse(capsys, work, ["--metrics", str(out / "no" / "m.jsonl")], "metrics", "does not exist")
    _refuse(capsys, work, ["--metrics", str(out)], "metrics path is a directory")
    _refuse(capsys, work, ["--checkpoint", str(good)], "is the corpus file itself")
    _refuse(capsys, work, ["--metrics", str(good)], "is the corpus file itself")
    _refuse(capsys, work, ["--metrics", str(out / "c.npz")], "is the checkpoint file")

    import tempfile

    real_mkstemp = tempfile.mkstemp

    def read_only_folder(*a, dir=None, **k):  # noqa: A002 — root may write anywhere; refuse like a 555 folder
        if dir is not None and os.path.abspath(dir) == str(out):
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", read_only_folder)
    _refuse(capsys, work, [], "cannot write to checkpoint folder", "Permission denied")
    _refuse(capsys, work, ["--checkpoint", str(out.parent / "c.npz")], "cannot write to metrics folder",
            "Permission denied")
    assert not (out.parent / "c.npz").exists()


def test_existing_read_only_files_are_refused(capsys, work, monkeypatch):
    out, _ = work
    ck, m = out.parent / "ro.npz", out.parent / "ro.jsonl"
    ck.write_bytes(b"old")
    m.write_text("old\n")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p) in (str(ck), str(m)) and mode == os.W_OK
                        else real_access(p, mode, **k))
    _refuse(capsys, work, ["--checkpoint", str(ck)], "not writable")
    _refuse(capsys, work, ["--metrics", str(m)], "metrics", "permission denied")
    assert ck.read_bytes() == b"old" and m.read_text() == "old\n"


# -- checkpoints given to --resume -----------------------------------------------------------------------------


@pytest.fixture
def made(tmp_path, work, capsys):
    """A real checkpoint (3 steps), made outside the working folder."""
    out, good = work
    path = tmp_path / "made.npz"
    assert run([str(good), "--headless", "--max-steps", "3", *SMALL, "--checkpoint", str(path)]) == 0
    capsys.readouterr()
    return path


# a value unlike the one in `made` for each setting a resumed run must keep (no option: no value)
CHANGED = {"hidden_size": "9", "seq_length": "7", "batch_size": "3", "dtype": "float64", "init": "lecture",
           "cell": "lstm", "layers": "2", "dropout": "0.3", "forget_bias": "0.5", "val_fraction": "0.3",
           "val_chars": None}


def test_the_fixed_settings_are_the_run_settings_but_seed():
    assert set(RESUME_FIXED) == set(CHANGED) == {f.name for f in dataclasses.fields(TrainConfig)} - {"hyper", "seed"}
    options = {p.name for p in train.params}
    assert {k for k, v in CHANGED.items() if v is None}.isdisjoint(options), "a new option needs a changed value"


@pytest.mark.parametrize("name", [k for k, v in CHANGED.items()
                                  if v is not None and k not in ("dropout", "forget_bias")])
def test_every_fixed_setting_is_refused_on_resume(capsys, work, made, name):
    """Each TrainConfig setting but the hyperparameters and the seed must match the checkpoint's when given."""
    option = "--" + name.replace("_", "-")
    _refuse(capsys, work, ["--resume", str(made), option, CHANGED[name]], option, "cannot change", "leave it out")


def test_a_forget_bias_on_resuming_a_cell_without_a_forget_gate_is_refused(capsys, work, made):
    """`made` is an rnn: --forget-bias is refused as having nothing to set, even at the recorded value."""
    for value in ("1", "0.5"):
        _refuse(capsys, work, ["--resume", str(made), "--forget-bias", value], "--forget-bias",
                "the checkpoint's rnn cell has none", "leave it out")


def test_a_forget_bias_unlike_the_lstm_checkpoints_is_refused_on_resume(capsys, work, tmp_path):
    out, good = work
    lstm = tmp_path / "lstm.npz"
    assert run([str(good), "--headless", "--max-steps", "2", *SMALL, "--cell", "lstm", "--checkpoint", str(lstm)]) == 0
    capsys.readouterr()
    _refuse(capsys, work, ["--resume", str(lstm), "--forget-bias", "0.5"], "--forget-bias cannot change",
            "the checkpoint has 1.0", "leave it out")
    assert _resume(capsys, work, lstm, "--forget-bias", "1") == 0  # the recorded value may be given


def test_dropout_on_resuming_a_one_layer_run_is_refused(capsys, work, made):
    """Dropout acts between layers: given for `made` (one layer), it is refused as it would be for a new run."""
    _refuse(capsys, work, ["--resume", str(made), "--dropout", CHANGED["dropout"]], "dropout 0.3", "layers 2")


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_a_forget_bias_for_a_cell_without_a_forget_gate_is_refused(capsys, work, cell):
    line = _refuse(capsys, work, ["--cell", cell, "--forget-bias", "2"], "--forget-bias", f"the {cell} cell has none",
                   "--cell lstm")
    assert line.count("rnntui: error:") == 1


@pytest.mark.parametrize(("given", "recorded"), [(["--forget-bias", "0.5"], 0.5), (["--forget-bias", "drawn"], None),
                                                 ([], 1.0), (["--forget-bias", " -2 "], -2.0)])
def test_the_forget_bias_option_sets_the_lstms_first_forget_gate(capsys, work, given, recorded):
    """--forget-bias B puts B into b_if and 0 into b_hf; drawn leaves both as PyTorch draws them, U(±1/√H); the
    checkpoint records the setting."""
    out, good = work
    argv = [str(good), "--headless", "--max-steps", "1", *SMALL, "--cell", "lstm", "--lr", "1e-12",
            "--checkpoint", str(out / "c.npz"), *given]  # (one step, for a save; at this rate it moves nothing)
    assert run(argv) == 0, capsys.readouterr().err
    ckpt = load_checkpoint(out / "c.npz")
    assert ckpt.step == 1 and ckpt.config.forget_bias == recorded
    H = 8
    b_ih, b_hh = (np.asarray(ckpt.model().params[k], np.float64) for k in ("b_ih", "b_hh"))
    if recorded is None:
        forget = b_ih[H:2 * H]
        assert np.all(np.abs(forget) <= 1 / np.sqrt(H)) and len(set(forget.tolist())) == H  # drawn, one by one
        assert np.all(np.abs(b_hh[H:2 * H]) <= 1 / np.sqrt(H)) and np.any(b_hh[H:2 * H] != 0)
    else:
        np.testing.assert_allclose(b_ih[H:2 * H], recorded, atol=1e-9)
        np.testing.assert_allclose(b_hh[H:2 * H], 0, atol=1e-9)


def test_seed_and_hyperparameters_may_be_given_on_resume(capsys, work, made):
    out, _ = work
    assert _resume(capsys, work, made, "--seed", "7", "--lr", "0.02") == 0, capsys.readouterr().err
    assert load_checkpoint(out / "c.npz").step == 5


def _rewrite(src, dst, header=None, arrays=None):
    with np.load(src) as z:
        a = {k: z[k] for k in z.files}
    h = json.loads(a.pop("__header__").tobytes())
    if header:
        header(h)
    if arrays:
        arrays(a)
    np.savez(dst, __header__=np.frombuffer(json.dumps(h).encode(), dtype=np.uint8), **a)
    return dst


def _resume(capsys, work, ckpt, *extra):
    out, good = work
    rc = run([str(good), "--headless", "--resume", str(ckpt), "--max-steps", "5", "--checkpoint",
              str(out / "c.npz"), "--metrics", str(out / "m.jsonl"), *extra])
    return rc


def test_resume_missing_and_corrupt(capsys, work, made, tmp_path):
    _refuse(capsys, work, ["--resume", str(tmp_path / "nope.npz")], "checkpoint not found")
    data = made.read_bytes()
    for cut in (0, 10, 100, len(data) // 3, len(data) // 2, len(data) - 30, len(data) - 1):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        _refuse(capsys, work, ["--resume", str(bad)], "corrupt or truncated")
    flipped = bytearray(data)
    for i in range(200, len(data), max(1, len(data) // 7)):
        flipped[i] ^= 0xFF
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    _refuse(capsys, work, ["--resume", str(tmp_path / "flipped.npz")], "checkpoint")


HEADER_EDITS = {
    "no-step": lambda h: h.pop("step"),
    "step-negative": lambda h: h.update(step=-3),
    "step-text": lambda h: h.update(step="three"),
    "no-stream": lambda h: h.pop("stream"),
    "stream-position-text": lambda h: h["stream"].update(position="x"),
    "no-optimizer": lambda h: h.pop("optimizer"),
    "optimizer-t-list": lambda h: h["optimizer"].update(t=[1]),
    "rng-garbage": lambda h: h.update(rng={"bit_generator": "nope"}),
    "loss-text": lambda h: h.update(loss="low"),
    "loss-nan": lambda h: h.update(loss=float("nan")),
    "hyper-unknown-key": lambda h: h["hyper"].update(momentum=3),
    "hyper-lr-negative": lambda h: h["hyper"].update(lr=-1),
    "vocab-unsorted": lambda h: h.update(vocab="ba"),
    "vocab-empty": lambda h: h.update(vocab=""),
    "samples-garbage": lambda h: h.update(samples=[[1]]),
    "config-not-dict": lambda h: h.update(config=[1, 2]),
    "header-list": lambda h: (h.clear(), None),
}
ARRAY_EDITS = {
    "param-nan": lambda a: a["param.w"].__setitem__((0, 0), np.nan),
    "param-inf": lambda a: a["param.by"].__setitem__((0, 0), np.inf),
    "param-missing": lambda a: a.pop("param.v"),
    "param-strings": lambda a: a.update({"param.bh": np.full(a["param.bh"].shape, "x")}),
    "h-wrong-shape": lambda a: a.update(h=np.zeros((2, 2))),
    "opt-state-missing": lambda a: a.pop("opt.m.w"),
    "opt-state-wrong-shape": lambda a: a.update({"opt.s.u": np.zeros(3)}),
    "monitor-missing": lambda a: a.pop("monitor.x"),
    "monitor-wrong-shape": lambda a: a.update({"monitor.x": np.zeros(2)}),
    "history-mismatch": lambda a: a.update({"hist.loss.values": np.zeros(1)}),
}


@pytest.mark.parametrize("edit", list(HEADER_EDITS) + list(ARRAY_EDITS))
def test_resume_inconsistent_checkpoint_is_refused_cleanly(capsys, work, made, tmp_path, edit):
    bad = _rewrite(made, tmp_path / f"{edit}.npz", header=HEADER_EDITS.get(edit), arrays=ARRAY_EDITS.get(edit))
    out, _ = work
    rc = _resume(capsys, work, bad)
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    if rc == 0:  # a harmless edit (e.g. a shorter history) may be accepted: then training must work
        assert "done: 5 steps" in cap.out
        return
    assert rc == 2, cap.err
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnntui: error: ") and "checkpoint" in lines[0], cap.err
    assert os.listdir(out) == []
    # the other commands that read checkpoints refuse it the same way (or work)
    for argv in (["sample", str(bad), "-n", "5"], ["gradcheck", "--checkpoint", str(bad), "--entries", "2"]):
        rc = run(argv)
        cap = capsys.readouterr()
        assert rc in (0, 1, 2) and "Traceback" not in cap.err, (argv, cap.err)


def test_random_garbage_inside_the_zip(capsys, work, made, tmp_path):
    """A zip that is intact but whose members are not what we wrote."""
    bad = tmp_path / "garbage.npz"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("__header__.npy", b"\x93NUMPY garbage")
        z.writestr("param.w.npy", os.urandom(100))
    _refuse(capsys, work, ["--resume", str(bad)], "checkpoint")


def test_vocabulary_mismatch_explains_both(capsys, work, made, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("Zebras & quokkas! ÆØÅ " * 30, encoding="utf-8")
    line = _refuse(capsys, work, ["--resume", str(made)], "vocabulary mismatch", corpus=other)
    ck = load_checkpoint(made)
    assert f"the checkpoint knows {ck.vocab.size} characters" in line
    assert "the corpus uses" in line and "unknown to the checkpoint" in line and "Æ" in line
    assert "continues on its vocabulary" in line


def test_corpus_within_the_checkpoint_vocabulary_resumes_with_a_note(capsys, work, made, tmp_path):
    out, _ = work
    ck = load_checkpoint(made)
    subset = tmp_path / "subset.txt"
    letters = "".join(c for c in ck.vocab.chars if c.isalpha())[:6] + " "
    subset.write_text((letters * 40), encoding="utf-8")
    rc = run([str(subset), "--headless", "--resume", str(made), "--checkpoint", str(out / "c.npz"),
              "--max-steps", "6"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    notes = [line for line in cap.err.splitlines() if line.startswith("rnntui: note:")]
    assert len(notes) == 1 and f"uses 7 of the checkpoint's {ck.vocab.size} characters" in notes[0]
    assert "continues on the checkpoint's vocabulary" in notes[0]
    assert load_checkpoint(out / "c.npz").vocab == ck.vocab


def test_resume_into_a_read_only_checkpoint_asks_for_another_path(capsys, work, made, monkeypatch):
    out, good = work
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def read_only(*a, dir=None, **k):  # noqa: A002
        if dir is not None and os.path.abspath(dir) == str(made.parent):
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    rc = run([str(good), "--headless", "--resume", str(made), "--max-steps", "5"])
    _one_line_error(capsys, rc, "saves back into it", "--checkpoint")
    rc = run([str(good), "--headless", "--resume", str(made), "--max-steps", "5", "--checkpoint", str(out / "n.npz")])
    assert rc == 0 and load_checkpoint(out / "n.npz").step == 5


def test_notes_do_not_precede_a_refusal(capsys, work, made, tmp_path):
    """A warning or note is shown only when the run goes ahead: a refusal stays one line."""
    ck = load_checkpoint(made)
    subset = tmp_path / "subset.txt"
    subset.write_text("".join(c for c in ck.vocab.chars if c.isalpha())[:6] * 40, encoding="utf-8")
    _refuse(capsys, work, ["--resume", str(made), "--hidden-size", "99"], "cannot change", corpus=subset)
    cjk = tmp_path / "cjk.txt"
    cjk.write_text("".join(chr(0x4E00 + i) for i in range(1500)), encoding="utf-8")
    _refuse(capsys, work, ["--batch-size", "500"], "batch size 500", corpus=cjk)


def test_messages_name_the_fix(capsys, work):
    """Spot check: the messages say what to do, not only what is wrong."""
    line = _refuse(capsys, work, ["--checkpoint-every", "often"], "30s")
    assert "5m" in line


def test_sample_and_gradcheck_refuse_bad_seeds_and_memory(capsys, made, monkeypatch):
    _one_line_error(capsys, run(["sample", str(made), "--seed", "-1"]), "--seed")
    _one_line_error(capsys, run(["gradcheck", "--seed", "-1"]), "--seed")
    from rnntui import gradcheck

    def no_memory(*a, **k):
        raise MemoryError("Unable to allocate 74.5 GiB")

    monkeypatch.setattr(gradcheck, "random_problem", no_memory)
    _one_line_error(capsys, run(["gradcheck", "--hidden-size", "100000"]), "not enough memory", "--hidden-size")
