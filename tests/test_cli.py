"""The rnntui command: one-line errors with exit code 2, headless runs, sample, gradcheck, resume, signals."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from rnntui.checkpoint import load as load_checkpoint
from rnntui.cli import main, run
from rnntui.headless import run_headless

SMALL = ["--hidden-size", "16", "--batch-size", "2", "--seq-length", "10"]


def _one_line_error(capsys, rc, *words):
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rnntui: error: ")
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def files(tmp_path, corpus_file):
    """Corpus files good and bad, and a valid checkpoint (written by a short headless run)."""
    f = {"good": corpus_file, "dir": tmp_path}
    (tmp_path / "empty.txt").write_bytes(b"")
    f["empty"] = tmp_path / "empty.txt"
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    f["latin1"] = tmp_path / "latin1.txt"
    (tmp_path / "short.txt").write_text("just a few words\n")
    f["short"] = tmp_path / "short.txt"
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 this is not really a zip file")
    f["corrupt"] = tmp_path / "corrupt.npz"
    return f


def _ckpt(tmp_path, corpus_file, steps=3):
    path = tmp_path / "made.npz"
    assert run([str(corpus_file), "--headless", "--max-steps", str(steps), *SMALL, "--checkpoint", str(path)]) == 0
    return path


# -- bad input: one line, exit code 2 -----------------------------------------------------------------------


@pytest.mark.parametrize(("case", "words"), [
    (["{missing}"], ["not found"]),
    (["{dir}"], ["directory"]),
    (["{empty}"], ["empty"]),
    (["{latin1}"], ["not valid UTF-8", "byte offset 3"]),
    (["{short}", "--seq-length", "25"], ["needs at least 26"]),
    (["{good}", "--batch-size", "1000", "--seq-length", "25"], ["batch size 1000"]),
    (["{good}", "--hidden-size", "0"], ["hidden size"]),
    (["{good}", "--hidden-size", "-5"], ["hidden size"]),
    (["{good}", "--batch-size", "0"], ["batch size"]),
    (["{good}", "--seq-length", "0"], ["seq length"]),
    (["{good}", "--lr", "0"], ["learning rate"]),
    (["{good}", "--lr", "-0.1"], ["learning rate"]),
    (["{good}", "--lr", "nan"], ["learning rate", "finite"]),
    (["{good}", "--lr", "inf"], ["learning rate", "finite"]),
    (["{good}", "--lr", "fast"], ["--lr"]),
    (["{good}", "--clip", "0"], ["clip"]),
    (["{good}", "--clip", "-1"], ["clip"]),
    (["{good}", "--optimizer", "lbfgs"], ["--optimizer", "lbfgs"]),
    (["{good}", "--clip-mode", "sometimes"], ["--clip-mode"]),
    (["{good}", "--temperature", "-1"], ["temperature"]),
    (["{good}", "--max-steps", "-1"], ["--max-steps"]),
    (["{good}", "--log-every", "0"], ["--log-every"]),
    (["{good}", "--val-fraction", "0.95"], ["val fraction"]),
    (["{good}", "--no-such-option"], ["no-such-option"]),
    (["{good}", "--resume", "{missing_ckpt}"], ["checkpoint not found"]),
    (["{good}", "--resume", "{corrupt}"], ["corrupt or truncated"]),
    (["{good}", "--resume", "{good}"], ["corrupt or truncated"]),
    (["{good}", "--checkpoint", "{nodir}"], ["does not exist"]),
    (["{good}", "--checkpoint", "{dir}"], ["directory"]),
    (["{good}", "--metrics", "{nodir_metrics}"], ["metrics"]),
])
def test_train_errors(files, tmp_path, capsys, case, words):
    paths = {k: str(v) for k, v in files.items()}
    paths.update(missing=str(tmp_path / "missing.txt"), missing_ckpt=str(tmp_path / "missing.npz"),
                 nodir=str(tmp_path / "no" / "such" / "dir" / "c.npz"),
                 nodir_metrics=str(tmp_path / "no" / "m.jsonl"))
    case = [a.format(**paths) for a in case]
    argv = [case[0], "--headless", "--max-steps", "2", *SMALL, *case[1:]]  # the last of a repeated option wins
    _one_line_error(capsys, run(argv), *words)


def test_resume_refusals(files, tmp_path, capsys):
    ck = _ckpt(tmp_path, files["good"])
    capsys.readouterr()
    base = [str(files["good"]), "--headless", "--resume", str(ck)]
    _one_line_error(capsys, run([*base, "--hidden-size", "32"]), "--hidden-size", "cannot change")
    _one_line_error(capsys, run([*base, "--max-steps", "2"]), "already at step 3")
    other = tmp_path / "other.txt"
    other.write_text("Zebras & quokkas! " * 30)
    _one_line_error(capsys, run([str(other), "--headless", "--resume", str(ck)]), "vocabulary")


def test_sample_and_gradcheck_errors(files, tmp_path, capsys):
    ck = _ckpt(tmp_path, files["good"])
    capsys.readouterr()
    _one_line_error(capsys, run(["sample", str(tmp_path / "nope.npz")]), "not found")
    _one_line_error(capsys, run(["sample", str(files["corrupt"])]), "corrupt")
    _one_line_error(capsys, run(["sample", str(ck), "--prime", "@@#"]), "--prime", "#")
    _one_line_error(capsys, run(["sample", str(ck), "-n", "0"]), "sample length")
    _one_line_error(capsys, run(["sample", str(ck), "--temperature", "nan"]), "temperature")
    _one_line_error(capsys, run(["gradcheck", "--hidden-size", "0"]), "--hidden-size")
    _one_line_error(capsys, run(["gradcheck", "--threshold", "-1"]), "--threshold")
    _one_line_error(capsys, run(["gradcheck", "--checkpoint", str(files["corrupt"])]), "corrupt")


# -- working runs ------------------------------------------------------------------------------------------


def test_headless_run_sample_gradcheck_and_resume(corpus_file, tmp_path, capsys):
    ck, metrics = tmp_path / "run.npz", tmp_path / "m.jsonl"
    argv = [str(corpus_file), "--headless", *SMALL, "--log-every", "4", "--checkpoint", str(ck),
            "--metrics", str(metrics), "--sample-every", "6", "--sample-length", "15", "--val-every", "5"]
    assert run([*argv, "--max-steps", "12"]) == 0
    out = capsys.readouterr().out
    assert "training " in out and "done: 12 steps" in out and "--- sample at step 6" in out
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8, 12]
    r = records[-1]
    assert r["optimizer"] == "adam" and np.isfinite(r["loss"]) and r["val_loss"] is not None
    assert set(r["grad"]) == {"u", "w", "v", "bh", "by", "total"} and len(r["dh_norms"]) == 10
    ckpt = load_checkpoint(ck)
    assert ckpt.step == 12 and ckpt.config.hidden_size == 16 and ckpt.config.batch_size == 2

    assert run(["sample", str(ck), "--prime", "The", "-n", "40", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("The") and len(first) == len("The") + 40 + 1
    assert set(first[:-1]) <= set(ckpt.vocab.chars)
    assert run(["sample", str(ck), "--prime", "The", "-n", "40", "--seed", "3"]) == 0
    assert capsys.readouterr().out == first  # a seed makes it reproducible

    assert run(["gradcheck"]) == 0
    out = capsys.readouterr().out
    assert "all passed" in out and "h0" in out
    assert run(["gradcheck", "--checkpoint", str(ck), "--entries", "5"]) == 0
    assert "all passed" in capsys.readouterr().out
    assert run(["gradcheck", "--threshold", "1e-30"]) == 1  # a check that cannot pass is reported as failed
    assert "FAILED" in capsys.readouterr().err

    assert run([str(corpus_file), "--headless", "--resume", str(ck), "--checkpoint", str(ck), "--max-steps", "20",
                "--log-every", "4", "--metrics", str(metrics), "--lr", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "from step 12" in out and "done: 20 steps" in out
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [4, 8, 12, 16, 20]
    resumed = load_checkpoint(ck)
    assert resumed.step == 20 and resumed.hyper.lr == 0.001 and resumed.hyper.sample_every == 6


def test_lecture_preset(corpus_file, tmp_path, capsys):
    ck = tmp_path / "lec.npz"
    assert run([str(corpus_file), "--headless", "--lecture", "--lr", "0.05", *SMALL, "--max-steps", "2",
                "--checkpoint", str(ck)]) == 0
    h = load_checkpoint(ck).hyper
    assert (h.optimizer, h.lr, h.clip_mode, h.clip) == ("adagrad", 0.05, "element", 5.0)  # explicit --lr wins
    assert load_checkpoint(ck).config.init == "lecture"


def test_click_runner_on_main(corpus_file):
    r = CliRunner().invoke(main, ["gradcheck", "--hidden-size", "4", "--vocab-size", "5"])
    assert r.exit_code == 0, r.output
    assert "all passed" in r.output
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and "0.1.0" in r.output
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "gradcheck" in r.output and "sample" in r.output


# -- headless end states ----------------------------------------------------------------------------------


def _headless_in_thread(trainer, **kwargs):
    out = io.StringIO()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "rc", run_headless(trainer, out=out, install_signals=False, **kwargs)), daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "run_headless did not return (waiting for commands nobody can send?)"
    return result["rc"], out.getvalue()


def _diverges_after_step_3(tr, monkeypatch):
    """An infinite gradient in by at step 4."""
    original = tr.model.loss_and_grads

    def poisoned(*args):
        loss, grads, h, diag = original(*args)
        if tr.step == 3:
            grads["by"][0, 0] = np.inf
        return loss, grads, h, diag

    monkeypatch.setattr(tr.model, "loss_and_grads", poisoned)


def test_headless_divergence_exits_1_and_saves_last_finite_parameters(make_trainer, tmp_path, monkeypatch, capsys):
    ck = tmp_path / "c.npz"
    tr = make_trainer(checkpoint_path=str(ck))
    _diverges_after_step_3(tr, monkeypatch)
    rc, out = _headless_in_thread(tr, max_steps=50, log_every=1)
    assert rc == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and "by" in err and "step 4" in err
    ckpt = load_checkpoint(ck)
    assert ckpt.step == 3
    assert all(np.isfinite(ckpt.arrays[f"param.{k}"]).all() for k in ("u", "w", "v", "bh", "by"))


def test_headless_crash_exits_1(make_trainer, monkeypatch, capsys):
    tr = make_trainer()

    def boom(*args):
        raise FloatingPointError("synthetic failure")

    monkeypatch.setattr(tr.model, "loss_and_grads", boom)
    rc, _ = _headless_in_thread(tr, max_steps=5)
    assert rc == 1
    err = capsys.readouterr().err
    assert "crashed" in err and "synthetic failure" in err


# -- real processes ----------------------------------------------------------------------------------------


def _env():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("PYTHONWARNINGS", None)
    return env


def test_subprocess_headless(corpus_file, tmp_path):
    p = subprocess.run([sys.executable, "-m", "rnntui", str(corpus_file), "--headless", "--max-steps", "30",
                        *SMALL, "--log-every", "10"], capture_output=True, text=True, timeout=120, env=_env(),
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    steps = [line for line in p.stdout.splitlines() if line.startswith("step")]
    assert [int(s.split()[1]) for s in steps] == [10, 20, 30]
    assert "done: 30 steps" in p.stdout
    assert "Traceback" not in p.stderr


def test_subprocess_error_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "rnntui", str(tmp_path / "missing.txt"), "--headless"],
                       capture_output=True, text=True, timeout=60, env=_env())
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("rnntui: error: corpus file not found")


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32", reason="POSIX signals")
def test_sigterm_saves_checkpoint_and_exits_0(corpus_file, tmp_path):
    ck = tmp_path / "sig.npz"
    proc = subprocess.Popen([sys.executable, "-m", "rnntui", str(corpus_file), "--headless", *SMALL,
                             "--log-every", "1", "--checkpoint", str(ck)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    seen = []
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("step") for line in seen):
            assert time.monotonic() < deadline, "no progress line within 60 s:\n" + "".join(seen)
            assert proc.poll() is None, proc.stderr.read()
            try:
                seen.append(lines.get(timeout=0.5))
            except queue.Empty:
                pass
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    while not lines.empty():
        seen.append(lines.get())
    out = "".join(seen)
    err = proc.stderr.read()
    assert rc == 0, err
    assert "SIGTERM: stopping" in out
    ckpt = load_checkpoint(ck)
    assert ckpt.step >= 1
    assert f"done: {ckpt.step} steps" in out


# -- errors name what the user gave; the help documents what it shows -------------------------------------------


def test_a_missing_checkpoint_is_named_by_the_option_or_argument_given(files, tmp_path, capsys):
    missing = str(tmp_path / "missing.npz")
    err = _one_line_error(capsys, run(["sample", missing]), "checkpoint not found", "CHECKPOINT given to rnntui sample")
    assert "--resume" not in err
    err = _one_line_error(capsys, run(["gradcheck", "--checkpoint", missing]), "the path given to --checkpoint")
    assert "--resume" not in err
    _one_line_error(capsys, run([str(files["good"]), "--headless", "--resume", missing]),
                    "the path given to --resume")
    err = _one_line_error(capsys, run(["sample", str(files["corrupt"])]), "corrupt", "rnntui sample")
    assert "--resume" not in err and "--checkpoint" not in err
    _one_line_error(capsys, run(["sample", str(tmp_path)]), "directory", "rnntui sample")


def test_help_shows_every_default_readably_and_documents_train(capsys):
    sample_help = CliRunner().invoke(main, ["sample", "--help"]).output
    assert "[default: a newline]" in sample_help and "('\\n')" not in sample_help and "'\\n'" not in sample_help
    train_help = CliRunner().invoke(main, ["train", "--help"], terminal_width=200).output
    dtype = next(line for line in train_help.splitlines() if "--dtype" in line)
    assert "Precision" in dtype and "[default: float32]" in dtype
    assert "--overwrite" in train_help
    main_help = " ".join(CliRunner().invoke(main, ["--help"], terminal_width=200).output.split())
    assert "rnntui CORPUS means rnntui train CORPUS" in main_help
    assert "rnntui train FILE" in main_help and "rnntui [options] -- FILE" in main_help


@pytest.mark.parametrize("name", ["sample", "train", "gradcheck"])
def test_a_corpus_named_like_a_command_is_given_with_train_or_after_dashes(text, tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(text, encoding="utf-8")
    assert run(["train", name, "--headless", "--max-steps", "2", *SMALL]) == 0
    assert f"training {name}:" in capsys.readouterr().out
    assert run(["--headless", "--max-steps", "2", *SMALL, "--", name]) == 0
    assert f"training {name}:" in capsys.readouterr().out


def test_headless_end_says_where_the_run_was_saved(corpus_file, tmp_path, runs_home, capsys):
    assert run([str(corpus_file), "--headless", "--max-steps", "5", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "run corpus-1 (rnntui watch corpus-1 from another terminal)\n" in out  # a run like any other
    assert f"checkpoint: {runs_home / 'runs' / 'corpus-1' / 'checkpoint.npz'} (step 5)\n" in out  # in its folder
    ck = tmp_path / "run.npz"
    assert run([str(corpus_file), "--headless", "--max-steps", "5", *SMALL, "--checkpoint", str(ck)]) == 0
    assert f"checkpoint: {ck} (step 5)\n" in capsys.readouterr().out


def test_headless_divergence_without_a_checkpoint_says_nothing_was_saved(make_trainer, monkeypatch, capsys):
    tr = make_trainer()
    _diverges_after_step_3(tr, monkeypatch)
    rc, _ = _headless_in_thread(tr, max_steps=50)
    assert rc == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and err.rstrip().endswith("; not saved: 3 steps discarded "
                                                                "(no --checkpoint PATH given)")
