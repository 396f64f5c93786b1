"""Property-based tests: random corpora and random hyperparameters never break rnntui.

Whatever the text (random Unicode, lengths near the minimum the BPTT window needs) and
whatever the settings (in range, out of range, NaN, infinite), the outcome is one of two:
a clean one-line error with exit code 2 and nothing written, or training steps whose
figures are all finite (or a clean ``diverged`` stop that keeps finite parameters).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from rnntui.cli import run
from rnntui.config import ConfigError, HyperParams, TrainConfig
from rnntui.corpus import Corpus, CorpusError, read_text
from rnntui.trainer import DIVERGED, Trainer

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MORE = settings(FAST, max_examples=60)

# Characters from every corner of Unicode (no surrogates: a UTF-8 file cannot hold them).
unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=80)
small_alphabet = st.text(st.sampled_from("ab c\n\té€𝄞中\r"), min_size=0, max_size=80)

weird_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-320, 1e3 + 1, 1e308, -1.0, float("nan"), float("inf"), -float("inf")]),
)


def mostly(valid: st.SearchStrategy, weird: st.SearchStrategy = weird_floats) -> st.SearchStrategy:
    """Valid values four times in five, anything at all (NaN, ±inf, out of range) otherwise."""
    return st.integers(0, 4).flatmap(lambda k: weird if k == 0 else valid)


@st.composite
def corpus_near_minimum(draw, seq_length: int, batch_size: int, val_fraction: float = 0.1) -> str:
    """Random Unicode text whose length is within a few characters of what (B, T) needs."""
    need = batch_size * seq_length + 1
    need = int(need / (1 - val_fraction)) + 1 if val_fraction else need
    n = draw(st.one_of(st.integers(max(0, need - 3), need + 3), st.integers(need, need + 40)))
    chars = draw(st.one_of(
        st.lists(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30),
        st.lists(st.sampled_from("ab \n\té€𝄞中\r"), min_size=1, max_size=8)))
    return "".join(draw(st.lists(st.sampled_from(chars), min_size=n, max_size=n)))


def _finite_figures(record: dict) -> None:
    for key in ("loss", "loss_ema"):
        assert record[key] is not None and math.isfinite(record[key]), record
    for name, g in record.get("grad", {}).items():
        for k, v in g.items():
            assert math.isfinite(v), (name, k, v)
    for v in record.get("dh_norms", []):
        assert math.isfinite(v)


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run(argv)
    return rc, out.getvalue(), err.getvalue()


def _assert_clean_error(rc: int, err: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnntui: error: "), err
    assert "Traceback" not in err


BAD_OPTION = {  # option -> strategy for a value it must refuse
    "--lr": weird_floats.filter(lambda v: not 0 < v <= 1e3),
    "--clip": weird_floats.filter(lambda v: not 0 < v < float("inf")),
    "--temperature": weird_floats.filter(lambda v: not 0 <= v <= 100),
    "--clip-mode": st.sampled_from(["bogus", "", "GLOBAL!"]),
    "--optimizer": st.sampled_from(["lbfgs", "", "adam2"]),
    "--seq-length": st.integers(-3, 0),
    "--hidden-size": st.sampled_from([0, -1, 10**6]),
    "--batch-size": st.integers(-3, 0),
    "--val-fraction": weird_floats.filter(lambda v: not 0 <= v < 0.9),
    "--sample-length": st.sampled_from([0, -5, 10**7]),
    "--max-steps": st.integers(-5, -1),
    "--checkpoint-every": st.sampled_from(["-1", "x", "nans", "infm", "0.1s", "1.5"]),
}


@MORE
@given(data=st.data(), seq_length=st.integers(1, 12), batch_size=st.integers(1, 4), hidden=st.integers(1, 8),
       lr=st.floats(1e-4, 1.0), clip=st.floats(0.1, 10.0), clip_mode=st.sampled_from(["global", "element", "none"]),
       optimizer=st.sampled_from(["adam", "adagrad", "rmsprop", "momentum", "sgd"]),
       temperature=st.floats(0.0, 3.0), broken=st.sampled_from([None] * len(BAD_OPTION) + list(BAD_OPTION)))
def test_cli_random_corpus_and_settings(data, seq_length, batch_size, hidden, lr, clip, clip_mode, optimizer,
                                        temperature, broken):
    """Through the real command line: a clean one-line error (nothing written) or finite figures."""
    text = data.draw(corpus_near_minimum(seq_length, batch_size))
    with tempfile.TemporaryDirectory() as d:
        corpus = os.path.join(d, "c.txt")
        with open(corpus, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        metrics, ckpt = os.path.join(d, "m.jsonl"), os.path.join(d, "c.npz")
        argv = [corpus, "--headless", "--max-steps", "3", "--log-every", "1", "--seq-length", str(seq_length),
                "--batch-size", str(batch_size), "--hidden-size", str(hidden), "--lr", repr(lr), "--clip", repr(clip),
                "--clip-mode", clip_mode, "--optimizer", optimizer, "--temperature", repr(temperature),
                "--sample-every", "2", "--sample-length", "5", "--val-every", "2", "--metrics", metrics,
                "--checkpoint", ckpt, "--checkpoint-every", "2"]
        if broken:
            argv += [broken, str(data.draw(BAD_OPTION[broken], label=broken))]  # the last occurrence wins
        rc, out, err = _run_cli(argv)
        event(f"exit code {rc}")
        if broken:
            assert rc == 2, (broken, out, err)
        if rc == 2:
            _assert_clean_error(rc, err)
            assert sorted(os.listdir(d)) == ["c.txt"], "a refused run must write nothing"
            return
        assert "Traceback" not in err
        records = [json.loads(line) for line in open(metrics, encoding="utf-8")]
        assert records, out
        if rc == 1:  # the only other clean end: diverged, with the last finite parameters saved
            assert "diverged" in err
        else:
            assert rc == 0, err
            assert records[-1]["step"] == 3
            for r in records:
                _finite_figures(r)
        from rnntui.checkpoint import load

        ck = load(ckpt)  # refuses non-finite parameters, so loading proves they are finite
        assert ck.step <= 3


@MORE
@given(data=st.data(), seq_length=st.integers(1, 10), batch_size=st.integers(1, 4),
       lr=mostly(st.floats(1e-4, 1.0)), clip=mostly(st.floats(0.1, 10.0)),
       clip_mode=st.sampled_from(["global", "element", "none"]),
       optimizer=st.sampled_from(["adam", "adagrad", "rmsprop", "momentum", "sgd"]),
       dtype=st.sampled_from(["float32", "float64"]), val_fraction=mostly(st.sampled_from([0.0, 0.1, 0.3])))
def test_trainer_random_corpus_and_settings(data, seq_length, batch_size, lr, clip, clip_mode, optimizer, dtype,
                                            val_fraction):
    """Through the Python API: ConfigError/CorpusError, or steps with finite figures (or a clean divergence)."""
    text = data.draw(corpus_near_minimum(seq_length, batch_size,
                                         val_fraction if 0 <= val_fraction < 0.9 else 0.0))
    try:
        hyper = HyperParams(lr=lr, clip=clip, clip_mode=clip_mode, optimizer=optimizer, sample_every=2,
                            sample_length=4, val_every=2)
        cfg = TrainConfig(hidden_size=6, seq_length=seq_length, batch_size=batch_size, dtype=dtype,
                          val_fraction=val_fraction, hyper=hyper).validated()
        corpus = Corpus.from_text(text, val_fraction=cfg.val_fraction)
        trainer = Trainer(corpus, cfg)
    except (ConfigError, CorpusError) as e:
        assert str(e) and "\n" not in str(e)
        event("refused")
        return
    event("trained")
    for _ in range(4):
        stats = trainer.train_step()
        if stats is None:
            assert trainer.state == DIVERGED and "DIVERGED at step" in trainer.message
            break
        assert math.isfinite(trainer.loss) and math.isfinite(trainer.loss_ema)
        assert all(math.isfinite(p.norm_pre) and math.isfinite(p.norm_post) and math.isfinite(p.update_ratio)
                   for p in stats.params + (stats.total,))
        assert np.isfinite(stats.dh_norms).all()
        if trainer.val_loss is not None:
            assert math.isfinite(trainer.val_loss)
    assert all(np.isfinite(p).all() for p in trainer.model.params.values())


@FAST
@given(seq_length=st.integers(1, 30), batch_size=st.integers(1, 5), extra=st.integers(-2, 2),
       alphabet=st.sampled_from(["ab", "xyz\n", "中文字", "é€𝄞"]))
def test_lengths_at_the_minimum(seq_length, batch_size, extra, alphabet):
    """A text of exactly the minimum length trains; one character fewer is a clean error saying how long."""
    need = batch_size * seq_length + 1  # with no validation split
    n = max(1, need + extra)
    text = (alphabet * (n // len(alphabet) + 1))[:n]
    cfg = TrainConfig(hidden_size=4, seq_length=seq_length, batch_size=batch_size, val_fraction=0.0,
                      hyper=HyperParams(sample_every=0, val_every=0))
    corpus = Corpus.from_text(text, val_fraction=0.0)
    if n < need:
        with pytest.raises(CorpusError, match=r"needs at least \d+"):
            Trainer(corpus, cfg)
        return
    trainer = Trainer(corpus, cfg)
    for _ in range(3):
        assert trainer.train_step() is not None
        assert math.isfinite(trainer.loss)


@FAST
@given(data=st.binary(max_size=200))
def test_any_bytes_are_read_or_refused_cleanly(data):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "c.txt")
        with open(p, "wb") as f:
            f.write(data)
        try:
            text = read_text(p)
        except CorpusError as e:
            assert "\n" not in str(e) and p in str(e)
            return
        assert text.strip() and "\r" not in text and "\x00" not in text


@FAST
@given(every=st.one_of(st.text(max_size=6), st.integers(-5, 10**6).map(str),
                       st.tuples(weird_floats, st.sampled_from("smhx")).map(lambda t: f"{t[0]}{t[1]}")))
def test_checkpoint_every_values(every):
    from click import ClickException

    from rnntui.cli import parse_interval

    try:
        steps, seconds = parse_interval(every)
    except ClickException as e:
        assert "--checkpoint-every" in e.format_message()
        return
    assume(steps or seconds)
    assert (steps > 0 and seconds == 0) or (steps == 0 and seconds >= 1 and math.isfinite(seconds))
