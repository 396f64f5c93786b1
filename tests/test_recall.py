"""The long-memory probe: recall.txt's format detected from the text, and the copy loss per distance k."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rnntui import Corpus, HyperParams, TrainConfig, Trainer
from rnntui.corpus import read_text
from rnntui.model import CharRNN
from rnntui.recall import (
    EVERY,
    MIN_LINES,
    RecallProbe,
    distance,
    is_recall_text,
    recall_share,
    window_share,
)
from rnntui.runs.metrics import metrics_record

DATA = Path(__file__).resolve().parent.parent / "sample_data"
MARKERS = {5: "abcd", 10: "efgh", 20: "ijkl", 40: "mnop"}


def recall_lines(n_blocks: int = 60, seed: int = 0, markers=MARKERS) -> list[str]:
    """Lines in recall.txt's format (without newlines): blocks holding every distance once."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n_blocks):
        for k in rng.permutation(list(markers)):
            m = rng.choice(list(markers[int(k)]))
            filler = "".join("-" if rng.random() < 1 / 8 else "." for _ in range(int(k) - 3))
            lines.append(f"{m}:{filler}={m}")
    return lines


def recall_text(n_blocks: int = 60, seed: int = 0) -> str:
    return "\n".join(recall_lines(n_blocks, seed)) + "\n"


# -- detection ------------------------------------------------------------------------


def test_recall_txt_is_detected_and_persuasion_is_not():
    assert is_recall_text(read_text(DATA / "recall.txt"))
    assert not is_recall_text(read_text(DATA / "persuasion.txt"))
    assert recall_share(read_text(DATA / "recall.txt")) == (3200, 3200)


def test_a_task_is_marker_colon_filler_equals_the_same_marker():
    lines = ["a:..=a", "q:.-..-=q", "z:=z", "7:.=7"]
    bad = ["a:..=b", "::..=:", "=:..==", ".:..=.", "a..=a", "a:..a", "a:.x.=a", "a:..=a ", " a:..=a", "", "ab:.=ab"]
    for line in lines:
        assert recall_share(line) == (1, 1), line
    for line in bad:
        assert recall_share(line + "\n")[0] == 0, line
    assert distance("..") == 5 and distance("") == 3


def test_nearly_every_line_must_be_a_task_and_enough_of_them():
    lines = recall_lines(20)  # 80 lines
    assert is_recall_text("\n".join(lines) + "\n")
    assert is_recall_text("\n".join(lines))  # no final newline
    spoilt = list(lines)
    for i in range(3):  # 3 of 80 lines are not tasks: 96 % still are
        spoilt[10 * i] = "a stray line of prose"
    assert is_recall_text("\n".join(spoilt))
    for i in range(3, 8):  # 8 of 80: 90 %
        spoilt[10 * i] = "a stray line of prose"
    assert not is_recall_text("\n".join(spoilt))
    assert not is_recall_text("\n".join(lines[: MIN_LINES - 1]))
    assert is_recall_text("\n".join(lines[:MIN_LINES]))
    assert not is_recall_text("")
    assert not is_recall_text("\n\n\n")
    blank_between = "\n\n".join(lines)  # every other line empty: half the lines are not tasks
    assert not is_recall_text(blank_between)


def test_prose_with_a_few_tasks_in_it_is_not_the_format():
    prose = read_text(DATA / "persuasion.txt")[:20_000]
    mixed = prose + "\n" + "\n".join(recall_lines(10)) + "\n"  # 40 task lines among ~300 of prose
    assert recall_share(mixed)[0] == 40
    assert not is_recall_text(mixed)


def test_a_piece_of_a_text_does_not_count_its_partial_end_lines():
    text = "\n".join(recall_lines(10))
    piece = "prose, cut off\n" + text + "\n..=a cut o"
    assert not is_recall_text("\n".join(["one", "two"] + recall_lines(5)))
    assert recall_share(piece, whole=False) == (40, 40)
    assert recall_share(piece) == (40, 42)


def test_for_corpus_finds_the_held_out_lines_of_recall_txt_and_refuses_other_text():
    corpus = Corpus.load(DATA / "recall.txt")
    probe = RecallProbe.for_corpus(corpus, 25, 20_000)
    assert probe is not None and probe.held_out
    assert probe.distances == (5, 10, 20, 40, 80)
    assert np.bincount(probe.k)[[5, 10, 20, 40, 80]].tolist() == [64] * 5  # the validation tail: 320 lines
    assert RecallProbe.for_corpus(Corpus.load(DATA / "persuasion.txt"), 25, 20_000) is None
    # a corpus without the characters of the format is refused without decoding anything
    assert RecallProbe.for_corpus(Corpus.from_text("abc\n" * 100), 25, 20_000) is None


def test_without_a_validation_part_the_last_training_lines_are_used():
    corpus = Corpus.from_text(recall_text(100), val_fraction=0.0)
    probe = RecallProbe.for_corpus(corpus, 25, 2_000)
    assert probe is not None and not probe.held_out
    assert 0 < len(probe.starts) <= 2_000 // 7
    last = corpus.vocab.decode(probe.seq[probe.starts[-1]:])
    assert last == recall_lines(100)[-1] + "\n"  # the very last line is scored


def test_a_piece_that_begins_inside_a_line_skips_that_line():
    vocab = Corpus.from_text(recall_text(10) + "x").vocab
    enc = vocab.encode
    # "xa:..=a" is one line of which the piece holds only "a:..=a": not a task of its own
    probe = RecallProbe(vocab, enc("a:..=a\nb:..=b\n" + recall_text(10)), context=enc("c:..=c\nx"), seq_length=25)
    assert vocab.decode(probe.seq[probe.starts[0]:probe.starts[0] + 6]) == "b:..=b"
    probe = RecallProbe(vocab, enc("a:..=a\nb:..=b\n"), context=enc("c:..=c\n"), seq_length=25)
    assert len(probe.starts) == 2


def test_the_streams_hold_each_line_once_and_read_the_text_before_it():
    corpus = Corpus.from_text(recall_text(80, seed=2))
    probe = RecallProbe.for_corpus(corpus, 25, 20_000)
    assert probe.streams > 1
    n = len(probe.starts)
    assert len({(int(t), int(s)) for t, s in zip(probe.eq_t, probe.eq_s, strict=True)}) == n
    chars = corpus.vocab.chars
    for i in range(n):
        t, s, k = probe.eq_t[i], probe.eq_s[i], probe.k[i]
        assert chars[probe.inputs[t, s]] == "="  # the '=' step
        assert probe.inputs[t - k + 1, s] == probe.markers[i]  # the marker, k − 1 steps before it
        # the stream read the text in order up to there
        start = probe.starts[i] + k - 1 - t
        assert np.array_equal(probe.inputs[: t + 1, s], probe.seq[start:probe.starts[i] + k])
    lengths = [int(probe.eq_t[probe.eq_s == s].max()) + 1 for s in range(probe.streams)]
    assert max(lengths) - min(lengths) <= 2 * 40 + 64  # cut by characters: the streams end about together


def test_window_share():
    assert window_share(5, 25) == pytest.approx(21 / 25)
    assert window_share(20, 25) == pytest.approx(6 / 25)
    assert window_share(25, 25) == pytest.approx(1 / 25)  # k = T: the marker opens the window, '=' closes it
    assert window_share(26, 25) == 0 and window_share(80, 50) == 0


# -- the figures on models whose answer is known ------------------------------------------------


def blank_model(vocab, H: int | None = None) -> CharRNN:
    model = CharRNN(vocab.size, H or vocab.size, chars=vocab.chars, dtype=np.float64)
    model.params.flat[...] = 0
    return model


@pytest.fixture(scope="module")
def probe_and_vocab():
    corpus = Corpus.from_text(recall_text(200, seed=1))  # 80 held-out lines, 20 per distance
    return RecallProbe.for_corpus(corpus, 25, 20_000), corpus.vocab


def test_a_model_that_always_predicts_the_same_distribution(probe_and_vocab):
    """ŷ = softmax(b_y) whatever the input: the copy loss is −log p(marker), the accuracy the share of 'a'."""
    probe, vocab = probe_and_vocab
    model = blank_model(vocab)
    p = np.full(vocab.size, 0.5 / (vocab.size - 1))
    p[vocab.index()["a"]] = 0.5
    model.params["by"][:, 0] = np.log(p)
    fig = probe.measure(model, step=7)
    assert fig.step == 7 and fig.seq_length == 25 and fig.held_out
    assert [r.k for r in fig.rows] == [5, 10, 20, 40]
    for r in fig.rows:
        marks = probe.markers[probe.k == r.k]
        assert r.copies == len(marks) > 0 and r.markers == 4
        assert r.loss == pytest.approx(float(np.mean(-np.log(p[marks]))), rel=1e-9)
        assert r.accuracy == pytest.approx(float(np.mean(marks == vocab.index()["a"])))
        assert r.chance_loss == pytest.approx(math.log(4))
    k5 = fig.row(5)
    assert 0 < k5.accuracy < 1, "the constructed text has 'a' and other markers at k = 5"
    assert all(r.accuracy == 0 for r in fig.rows if r.k != 5)  # 'a' is a marker of k = 5 only


def test_a_model_that_predicts_its_input_is_scored_at_the_equals_sign(probe_and_vocab):
    """h = tanh(3·onehot(x)), q = c·h: the model predicts the character it just read. At the '=' step that is
    '=', never the copy: the loss is log(e^{c·tanh 3} + V − 1) exactly and the accuracy 0. Scored one step
    late (the input being the copy) it would look perfect."""
    probe, vocab = probe_and_vocab
    V, c = vocab.size, 4.0
    model = blank_model(vocab)
    model.params["u"][...] = 3 * np.eye(V)
    model.params["v"][...] = c * np.eye(V)
    fig = probe.measure(model, step=1)
    expected = math.log(math.exp(c * math.tanh(3)) + V - 1)
    for r in fig.rows:
        assert r.accuracy == 0
        assert r.loss == pytest.approx(expected, rel=1e-9)


def test_a_model_that_holds_the_marker_recalls_it_at_every_distance(probe_and_vocab):
    """One unit per character: a newline drives every unit to the stable state −0.96 of h = tanh(2h + …), a
    marker drives its own unit to +0.96, filler changes nothing, and the output reads the marker units.
    Such a model carries the marker as far as needed: accuracy 1 at every k."""
    probe, vocab = probe_and_vocab
    V = vocab.size
    idx = vocab.index()
    marker_ids = [idx[m] for ms in MARKERS.values() for m in ms]
    model = blank_model(vocab)
    p = model.params
    p["w"][...] = 2 * np.eye(V)
    p["u"][:, idx["\n"]] = -10
    for m in marker_ids:
        p["u"][m, m] = 10
    for m in marker_ids:
        p["v"][m, m] = 10
    fig = probe.measure(model, step=2)
    assert all(r.accuracy == 1 for r in fig.rows)
    # logit 9.6 for the marker, 0 for the 5 other characters, −9.6 for the other markers: loss ≈ 5·e^−9.6
    assert all(r.loss < 1e-3 for r in fig.rows)
    # memory that fades by ×0.5 a step: 40 steps later the output is uniform, its loss ln V
    p["w"][...] = 0.5 * np.eye(V)
    p["u"][:, idx["\n"]] = 0
    fig = probe.measure(model, step=3)
    assert fig.row(40).loss == pytest.approx(math.log(V), abs=1e-6)
    assert fig.row(5).loss < fig.row(10).loss - 0.4 < math.log(V)


def test_the_batched_pass_is_the_plain_recurrence(probe_and_vocab):
    probe, vocab = probe_and_vocab
    model = CharRNN(vocab.size, 24, seed=3, chars=vocab.chars, dtype=np.float64)
    nll, correct = probe.copy_scores(model)
    u, w, v, bh, by = (model.params[k] for k in ("u", "w", "v", "bh", "by"))
    for i in range(0, len(probe.starts), 7):
        s, t = probe.eq_s[i], probe.eq_t[i]
        h = np.zeros((model.H, 1))
        for x in probe.inputs[: t + 1, s]:  # the lecture's loop, one character at a time
            h = np.tanh(u[:, [x]] + w @ h + bh)
        q = (v @ h + by)[:, 0]
        logp = q - np.log(np.exp(q - q.max()).sum()) - q.max()
        assert nll[i] == pytest.approx(-logp[probe.markers[i]], rel=1e-9)
        assert correct[i] == (np.argmax(q) == probe.markers[i])


def test_history_and_when_a_measurement_is_due(probe_and_vocab):
    probe, vocab = probe_and_vocab
    fresh = RecallProbe(vocab, probe.seq[64:], context=probe.seq[:64], seq_length=50)
    model = blank_model(vocab)
    assert fresh.due(100)
    fresh.measure(model, 100)
    assert not fresh.due(100 + EVERY - 1) and fresh.due(100 + EVERY)
    assert fresh.due(50), "a step before the last measurement (a restored checkpoint) measures again"
    fresh.measure(model, 100 + EVERY)
    fig = fresh.measure(model, 100 + EVERY)  # the same step again replaces, not appends
    assert [s for s, _ in fig.history] == [100, 100 + EVERY]
    assert len(fig.history[-1][1]) == len(fig.rows)
    d = fig.to_dict()
    assert d["seq_length"] == 50 and [x["k"] for x in d["distances"]] == [5, 10, 20, 40]
    assert d["distances"][3]["window_share"] == pytest.approx(11 / 50)


# -- in the trainer ---------------------------------------------------------------------------


def small_trainer(text: str, **hyper) -> Trainer:
    cfg = TrainConfig(hidden_size=16, seq_length=10, batch_size=4, seed=0,
                      hyper=HyperParams(**{"sample_every": 0, "val_every": 10, **hyper}))
    return Trainer(Corpus.from_text(text), cfg)


def test_the_trainer_measures_at_validation_and_publishes_the_figures():
    trainer = small_trainer(recall_text(60))
    assert trainer.recall is not None
    assert trainer.snapshot().recall is None
    for _ in range(10):
        trainer.train_step()
    snap = trainer.snapshot()
    assert snap.recall is not None and snap.recall.step == 10 and snap.recall.seq_length == 10
    assert [r.k for r in snap.recall.rows] == [5, 10, 20, 40]
    rec = metrics_record(trainer)
    assert rec["recall"]["step"] == 10 and len(rec["recall"]["distances"]) == 4
    for _ in range(10):  # the next validation is too soon for the probe
        trainer.train_step()
    assert trainer.snapshot().recall.step == 10


def test_a_corpus_not_in_the_format_has_no_probe(text):
    trainer = small_trainer(text)
    for _ in range(10):
        trainer.train_step()
    assert trainer.recall is None and trainer.snapshot().recall is None
    assert "recall" not in metrics_record(trainer)


def test_the_probe_costs_little_next_to_training_at_the_default_size():
    """(128, 25, 32) on recall.txt: one measurement against the EVERY steps of training it stands for."""
    import time

    corpus = Corpus.load(DATA / "recall.txt")
    trainer = Trainer(corpus, TrainConfig(hyper=HyperParams(sample_every=0, val_every=0)))
    for _ in range(3):
        trainer.train_step()
    steps, probes = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(20):
            trainer.train_step()
        steps.append((time.perf_counter() - t0) / 20)
        t0 = time.perf_counter()
        trainer.recall.measure(trainer.model, trainer.step)
        probes.append(time.perf_counter() - t0)
    share = min(probes) / (EVERY * min(steps))
    assert share < 0.05, f"the probe costs {100 * share:.1f} % of the training time it runs in"
