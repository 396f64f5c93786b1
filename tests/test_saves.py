"""No save replaces a file that is not the run's own: the run id, free names beside a taken file, and the
same rule for every way a run saves (a command, periodic saves, the end of a headless run, a signal, the
training process's rescue save, and --checkpoint at the start)."""

from __future__ import annotations

import io
import json
import signal
import sys
import threading

import numpy as np
import pytest

from rnntui import checkpoint
from rnntui.checkpoint import destination, header_of, may_replace
from rnntui.checkpoint import load as load_checkpoint
from rnntui.cli import run
from rnntui.trainer import Stop, resume_trainer

from .conftest import wait_until
from .test_faults import _headless, signal_headless_run

SMALL = ["--hidden-size", "16", "--batch-size", "2", "--seq-length", "10"]


def _steps(trainer, n):
    for _ in range(n):
        assert trainer.train_step() is not None


def _other_runs_checkpoint(make_trainer, path, steps=2, hidden_size=7):
    """A checkpoint of another run (another size, another id) written at ``path``, whatever is there (as one
    started with --overwrite would); returns its bytes."""
    other = make_trainer(hidden_size=hidden_size)
    _steps(other, steps)
    checkpoint.save(path, other)
    return path.read_bytes()


def test_every_run_has_its_own_id_in_its_checkpoints(make_trainer, tmp_path):
    a, b = make_trainer(), make_trainer()
    assert a.run_id != b.run_id and len(a.run_id) == 16
    a.save(str(tmp_path / "a.npz"))
    assert header_of(tmp_path / "a.npz")["run_id"] == a.run_id
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert header_of(tmp_path / "notes.txt") is None and header_of(tmp_path / "missing.npz") is None


def test_a_save_goes_beside_another_runs_checkpoint_and_stays_there(make_trainer, tmp_path):
    taken = tmp_path / "run.npz"
    theirs = _other_runs_checkpoint(make_trainer, taken)
    ours = make_trainer()
    _steps(ours, 3)
    assert ours.save(str(taken)) == str(tmp_path / "run-2.npz")
    assert taken.read_bytes() == theirs
    assert ours.saved_path == str(tmp_path / "run-2.npz") and ours.saved_step == 3
    assert ours.changes[-1].text == f"checkpoint saved to {tmp_path / 'run-2.npz'} ({taken} belongs to another run)"
    _steps(ours, 2)
    assert ours.save(str(taken)) == str(tmp_path / "run-2.npz")  # its own file now: replaced, no run-3
    assert load_checkpoint(tmp_path / "run-2.npz").step == 5 and not (tmp_path / "run-3.npz").exists()
    assert taken.read_bytes() == theirs
    # a third run finds both names taken
    third = make_trainer()
    assert third.save(str(taken)) == str(tmp_path / "run-3.npz")
    assert (tmp_path / "run-2.npz").exists() and load_checkpoint(tmp_path / "run-2.npz").step == 5


@pytest.mark.parametrize("name,content,beside", [
    ("notes.npz", b"my own notes, not a checkpoint", "notes-2.npz"),
    ("weights", b"PK\x03\x04 a zip of someone else's", "weights-2"),
    ("persuasion.rnntui.npz", b"\x00" * 10, "persuasion.rnntui-2.npz"),
])
def test_a_file_that_is_not_a_checkpoint_is_never_replaced(make_trainer, tmp_path, name, content, beside):
    (tmp_path / name).write_bytes(content)
    tr = make_trainer()
    _steps(tr, 1)
    assert destination(tmp_path / name, tr.run_id) == (str(tmp_path / beside),
                                                       f"{tmp_path / name} is not an rnntui checkpoint")
    assert tr.save(str(tmp_path / name)) == str(tmp_path / beside)
    assert (tmp_path / name).read_bytes() == content
    assert load_checkpoint(tmp_path / beside).step == 1


def test_the_run_own_checkpoint_is_replaced_and_resuming_keeps_the_id(make_trainer, tmp_path):
    path = tmp_path / "run.npz"
    tr = make_trainer(checkpoint_path=str(path))
    _steps(tr, 2)
    assert tr.save() == str(path)
    _steps(tr, 2)
    assert tr.save() == str(path) and load_checkpoint(path).step == 4  # replaced: its own
    resumed = resume_trainer(load_checkpoint(path), tr.corpus, checkpoint_path=str(path))
    assert resumed.run_id == tr.run_id
    _steps(resumed, 1)
    assert resumed.save() == str(path) and load_checkpoint(path).step == 5


def test_a_checkpoint_from_before_run_ids_is_continued_in_place(make_trainer, tmp_path):
    """A checkpoint whose header has no run id (written before they existed) belongs to the run resumed from it."""
    path = tmp_path / "old.npz"
    tr = make_trainer()
    _steps(tr, 2)
    arrays, header = checkpoint._arrays_and_header(tr.state_dict())
    del header["run_id"], header["changes"]
    checkpoint_bytes = io.BytesIO()
    np.savez(checkpoint_bytes, __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    path.write_bytes(checkpoint_bytes.getvalue())
    resumed = resume_trainer(load_checkpoint(path), tr.corpus, checkpoint_path=str(path))
    assert not may_replace(path, make_trainer().run_id)  # another run may not
    _steps(resumed, 1)
    assert resumed.save() == str(path) and load_checkpoint(path).step == 3
    assert load_checkpoint(path).header["run_id"] == resumed.run_id


def test_a_claimed_file_replaced_by_another_run_since_is_not_replaced(make_trainer, tmp_path):
    path = tmp_path / "old.npz"
    _other_runs_checkpoint(make_trainer, path)
    ours = make_trainer()
    ours.claimed.update(checkpoint.claim(path))  # what --overwrite does
    assert may_replace(path, ours.run_id, ours.claimed)
    theirs = _other_runs_checkpoint(make_trainer, path, steps=3)  # and then another run writes there
    assert not may_replace(path, ours.run_id, ours.claimed)
    assert ours.save(str(path)) == str(tmp_path / "old-2.npz") and path.read_bytes() == theirs


def test_periodic_saves_go_beside_a_file_another_run_wrote_since(make_trainer, tmp_path):
    path = tmp_path / "run.npz"
    tr = make_trainer(checkpoint_path=str(path))
    tr.checkpoint_every = 2
    _steps(tr, 2)
    assert load_checkpoint(path).header["run_id"] == tr.run_id
    theirs = _other_runs_checkpoint(make_trainer, path)
    _steps(tr, 2)
    assert path.read_bytes() == theirs
    assert load_checkpoint(tmp_path / "run-2.npz").step == 4 and tr.saved_path == str(tmp_path / "run-2.npz")


# -- headless ------------------------------------------------------------------------------------------------


def test_headless_end_of_run_save_goes_beside_another_runs_checkpoint(make_trainer, tmp_path, capsys):
    path = tmp_path / "run.npz"
    tr = make_trainer(checkpoint_path=str(path))
    theirs = _other_runs_checkpoint(make_trainer, path)  # written after this run started
    rc, out = _headless(tr, max_steps=4)
    assert rc == 0, capsys.readouterr().err
    assert path.read_bytes() == theirs
    assert f"checkpoint: {tmp_path / 'run-2.npz'} (step 4)" in out
    assert f"checkpoint saved to {tmp_path / 'run-2.npz'} ({path} belongs to another run)" in out
    assert load_checkpoint(tmp_path / "run-2.npz").step == 4


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_headless_signal_save_goes_beside_another_runs_checkpoint(corpus_file, tmp_path, make_trainer, sig):
    path = tmp_path / "sig.npz"
    theirs = {}

    def another_run_saves_there():
        theirs["bytes"] = _other_runs_checkpoint(make_trainer, path)

    rc, out, err = signal_headless_run(corpus_file, tmp_path, path, sig, meanwhile=another_run_saves_there)
    assert rc == 0, err
    assert path.read_bytes() == theirs["bytes"]
    saved = load_checkpoint(tmp_path / "sig-2.npz")
    assert f"checkpoint: {tmp_path / 'sig-2.npz'} (step {saved.step})" in out


# -- a served run's last save ------------------------------------------------------------------------------------


def test_a_served_runs_last_save_goes_beside_a_checkpoint_another_run_wrote_since(make_trainer, tmp_path):
    from rnntui.runs.folders import RunFolder
    from rnntui.runs.host import serve

    path = tmp_path / "run.npz"
    trainer = make_trainer(checkpoint_path=str(path))
    folder = RunFolder.create("tiny.txt", name="beside")
    ended = {}
    th = threading.Thread(target=lambda: ended.setdefault("end", serve(trainer, folder, signals=False)), daemon=True)
    th.start()
    wait_until(lambda: trainer.step >= 5, what="steps")
    theirs = _other_runs_checkpoint(make_trainer, path)  # another run writes there meanwhile
    trainer.send(Stop())  # (no save asked: the run's end saves its unsaved steps)
    th.join(30)
    folder.release()
    end = ended["end"]
    assert path.read_bytes() == theirs
    assert load_checkpoint(tmp_path / "run-2.npz").step == trainer.step == end.step
    assert end.note == f"checkpoint: {tmp_path / 'run-2.npz'} (step {trainer.step})"


# -- the command line: --checkpoint PATH at the start ------------------------------------------------------------


def _one_line_error(capsys, rc, *words):
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("rnntui: error: ") and "Traceback" not in err
    for w in words:
        assert w in err, err
    return err


def test_checkpoint_path_of_another_run_is_refused_at_the_start(corpus_file, tmp_path, make_trainer, capsys):
    path = tmp_path / "theirs.npz"
    theirs = _other_runs_checkpoint(make_trainer, path, hidden_size=7)
    argv = [str(corpus_file), "--headless", "--max-steps", "2", *SMALL, "--checkpoint", str(path)]
    _one_line_error(capsys, run(argv), f"--checkpoint {path} holds another run's checkpoint (step 2, H=7)",
                    "give another path", f"--resume {path} to continue that run", "--overwrite")
    assert path.read_bytes() == theirs
    # continuing it is allowed, and so is saving a resumed run into the file it came from
    assert run([str(corpus_file), "--headless", "--max-steps", "3", "--resume", str(path), "--checkpoint",
                str(path)]) == 0
    assert load_checkpoint(path).step == 3
    capsys.readouterr()
    # --overwrite says: replace it
    assert run([*argv, "--overwrite"]) == 0
    ck = load_checkpoint(path)
    assert ck.step == 2 and ck.config.hidden_size == 16
    assert f"checkpoint: {path} (step 2)" in capsys.readouterr().out


def test_checkpoint_path_holding_another_file_is_refused(corpus_file, tmp_path, capsys):
    path = tmp_path / "thesis.npz"
    path.write_bytes(b"three years of work")
    argv = [str(corpus_file), "--headless", "--max-steps", "2", *SMALL, "--checkpoint", str(path)]
    err = _one_line_error(capsys, run(argv), f"--checkpoint {path} holds a file that is not an rnntui checkpoint",
                          "give another path", "--overwrite")
    assert "--resume" not in err
    assert path.read_bytes() == b"three years of work"
    _one_line_error(capsys, run([str(corpus_file), "--headless", "--overwrite"]), "--overwrite", "--checkpoint PATH")


def test_a_resumed_run_saving_elsewhere_may_replace_its_own_earlier_files(corpus_file, tmp_path, capsys):
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    assert run([str(corpus_file), "--headless", "--max-steps", "2", *SMALL, "--checkpoint", str(first)]) == 0
    assert run([str(corpus_file), "--headless", "--max-steps", "4", "--resume", str(first), "--checkpoint",
                str(second)]) == 0
    # the same run (the id came along), so b.npz may be replaced by a resume of it, or of a.npz
    assert run([str(corpus_file), "--headless", "--max-steps", "6", "--resume", str(second), "--checkpoint",
                str(second)]) == 0
    assert run([str(corpus_file), "--headless", "--max-steps", "3", "--resume", str(first), "--checkpoint",
                str(second)]) == 0
    assert load_checkpoint(second).step == 3
    assert load_checkpoint(first).header["run_id"] == load_checkpoint(second).header["run_id"]


def test_when_every_name_beside_is_taken_nothing_is_replaced_and_the_save_says_so(make_trainer, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setattr(checkpoint, "FREE_NAMES", 3)
    taken = [_other_runs_checkpoint(make_trainer, tmp_path / name) for name in ("run.npz", "run-2.npz", "run-3.npz")]
    tr = make_trainer()
    _steps(tr, 1)
    assert tr.save(str(tmp_path / "run.npz")) is None and tr.saved_step is None
    assert tr.changes[-1].text == (f"checkpoint NOT saved: {tmp_path / 'run.npz'} belongs to another run, and the 2 "
                                   "numbered names beside it are taken too; save to another folder (--checkpoint PATH)")
    assert [(tmp_path / n).read_bytes() for n in ("run.npz", "run-2.npz", "run-3.npz")] == taken
