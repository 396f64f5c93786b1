"""Typed events: run states and change kinds, which views decide by, never by a message's words."""

from __future__ import annotations

import io
import json

import numpy as np

from rnntui import trainer as trainer_module
from rnntui.checkpoint import load as load_checkpoint
from rnntui.checkpoint import save as save_checkpoint
from rnntui.headless import run_headless
from rnntui.runs.host import save_at_end, save_or_rescue
from rnntui.runs.metrics import MetricsLog
from rnntui.trainer import (
    ALERT_KINDS,
    Change,
    ChangeKind,
    Pause,
    Resume,
    RunState,
    SaveCheckpoint,
    Stop,
    resume_trainer,
    stop_commands,
    unsaved,
)


def test_run_states_keep_the_values_snapshots_metrics_and_checkpoints_hold():
    assert [s.value for s in RunState] == ["running", "paused", "diverged", "crashed", "finished", "stopped"]
    for state in RunState:  # the module's names are the same members
        assert getattr(trainer_module, state.name) is state
        assert state == state.value and f"{state}" == state.value and json.dumps(state) == f'"{state.value}"'


def test_every_change_the_trainer_makes_carries_its_kind(make_trainer, tmp_path):
    tr = make_trainer(checkpoint_path=str(tmp_path / "run.npz"))
    assert tr.run(max_steps=2) == RunState.FINISHED  # started … finished
    tr.apply(Resume())
    tr.apply(Pause())
    tr.set_hyper(lr=0.02)
    tr.set_hyper(lr=-1.0)
    tr.save()
    tr.save(str(tmp_path / "no such folder" / "run.npz"))
    MetricsLog(str(tmp_path / "no such folder" / "m.jsonl")).write(tr)
    tr.model.params["w"][...] = np.nan  # the next step's loss is not finite
    assert tr.train_step() is None
    tr.apply(Resume())  # after the divergence: fresh optimizer state, then running

    def boom(t):
        t.send(Stop())
        raise RuntimeError("an observer failed")

    tr.set_hyper(lr=1e-3)
    tr.model.params["w"][...] = 0.0
    tr.run(max_steps=10, on_step=boom)
    K = ChangeKind
    assert [c.kind for c in tr.changes] == [
        K.STARTED, K.FINISHED, K.RESUMED, K.PAUSED, K.SET, K.REFUSED, K.SAVED, K.SAVE_FAILED, K.METRICS_FAILED,
        K.DIVERGED, K.RECOVERED, K.RESUMED, K.SET, K.STARTED, K.CRASHED]
    assert [c.alert for c in tr.changes] == [c.kind in ALERT_KINDS for c in tr.changes]
    assert {c.kind for c in tr.changes if c.alert} == ALERT_KINDS
    last = tr.changes[-1]
    assert tr.message == last.line == f"step {last.step}: {last.text}"  # the message reports the latest change


def test_the_kind_not_the_words_makes_an_alert():
    assert not Change(3, ChangeKind.SET, "DIVERGED CRASHED NOT saved refused").alert
    assert Change(3, ChangeKind.SAVE_FAILED, "all is well").alert


def test_a_change_without_a_kind_or_with_an_unknown_one_reads_as_a_note():
    """Checkpoints keep changes as dicts; one written before kinds (or by a newer version) still loads, and
    nothing is inferred from its text."""
    assert Change(**{"step": 4, "text": "checkpoint NOT saved: disk full"}).kind is ChangeKind.NOTE
    assert Change(**{"step": 4, "kind": "hyper", "text": "lr 1 → 2"}).kind is ChangeKind.NOTE
    assert Change(**{"step": 4, "kind": "save_failed", "text": "x"}).kind is ChangeKind.SAVE_FAILED
    assert not Change(4, text="DIVERGED").alert


def _header_changes(path) -> list[dict]:
    with np.load(path) as z:
        return json.loads(bytes(z["__header__"]).decode())["changes"]


def test_kinds_survive_a_checkpoint_and_an_old_checkpoint_without_them_loads(make_trainer, tmp_path):
    tr = make_trainer()
    tr.train_step()
    tr.set_hyper(lr=0.02)
    tr.set_hyper(lr=-1.0)
    path = tmp_path / "c.npz"
    save_checkpoint(path, tr)
    assert [c["kind"] for c in _header_changes(path)] == ["set", "refused"]  # plain strings in the file
    resumed = resume_trainer(load_checkpoint(path), tr.corpus)
    assert list(resumed.changes) == list(tr.changes)

    with np.load(path) as z:  # the same file as a version before kinds wrote it
        arrays = {k: z[k] for k in z.files}
    header = json.loads(bytes(arrays["__header__"]).decode())
    header["changes"] = [{k: v for k, v in c.items() if k != "kind"} for c in header["changes"]]
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)
    resumed = resume_trainer(load_checkpoint(old), tr.corpus)
    assert [(c.step, c.kind, c.text) for c in resumed.changes] == [
        (c.step, ChangeKind.NOTE, c.text) for c in tr.changes]


def test_unsaved_counts_trained_steps_no_file_holds(make_trainer, tmp_path):
    tr = make_trainer()
    assert not unsaved(tr) and not unsaved(tr.publish())  # nothing trained
    tr.train_step()
    assert unsaved(tr) and unsaved(tr.publish())
    tr.save(str(tmp_path / "c.npz"))
    assert not unsaved(tr) and not unsaved(tr.publish())


def test_stop_commands_keep_what_was_trained(make_trainer, tmp_path):
    tr = make_trainer()
    assert stop_commands(tr, "x.npz") == (Stop(),)  # nothing trained: nothing to save
    tr.train_step()
    assert stop_commands(tr) == (Stop(),)  # nowhere to save
    assert stop_commands(tr, "x.npz") == (SaveCheckpoint("x.npz"), Stop())
    tr.checkpoint_path = str(tmp_path / "c.npz")
    assert stop_commands(tr, "x.npz") == (Stop(save=True),)  # (saves even settings changed since its step)


def test_save_or_rescue_gives_the_failed_saves_own_reason(make_trainer, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    tr = make_trainer()
    tr.train_step()
    tr.save(str(tmp_path / "gone" / "first.npz"))  # an earlier failure: not the reason of the next save
    tr.set_hyper(lr=0.02)
    saved, why = save_or_rescue(tr, str(tmp_path / "also gone" / "run.npz"))
    assert saved is not None and load_checkpoint(saved).step == 1
    assert why.startswith("checkpoint NOT saved") and "also gone" in why and "first.npz" not in why
    assert save_at_end(tr) == (None, None)  # saved: nothing more to do


def test_save_at_end_saves_unsaved_steps_and_the_kept_parameters_of_a_diverged_run(make_trainer, tmp_path):
    tr = make_trainer()
    tr.train_step()
    assert save_at_end(tr) == (None, None)  # no checkpoint path, no fallback: nowhere
    fallback = str(tmp_path / "f.npz")
    assert save_at_end(tr, fallback) == (fallback, None) and tr.saved_step == 1
    tr.checkpoint_path = str(tmp_path / "c.npz")
    assert save_at_end(tr) == (None, None)  # saved at this step
    assert save_at_end(tr, ended=RunState.DIVERGED) == (tr.checkpoint_path, None)


def _changes_printed(tr, **kwargs) -> list[str]:
    out = io.StringIO()
    run_headless(tr, out=out, install_signals=False, **kwargs)
    return [line for line in out.getvalue().splitlines() if line.startswith("[step")]


def test_headless_prints_changes_by_kind_even_once_the_log_is_full(make_trainer, monkeypatch):
    tr = make_trainer()
    tr.changes.extend(Change(0, ChangeKind.SET, f"earlier {i}") for i in range(tr.changes.maxlen))
    note = tr.note
    monkeypatch.setattr(tr, "note", lambda kind, text: note(kind, f"{text}: refused, DIVERGED"))  # any words
    tr.send(Pause())  # applied at the start of the run, with the Resume after it
    tr.send(Resume())
    printed = _changes_printed(tr, max_steps=3, log_every=100)
    assert [c.kind for c in tr.changes][-4:] == [ChangeKind.STARTED, ChangeKind.PAUSED, ChangeKind.RESUMED,
                                                 ChangeKind.FINISHED]
    assert printed == ["[step 3] finished: reached 3 steps: refused, DIVERGED"]  # start, pause, resume: quiet


def test_headless_prints_samples_even_once_the_sample_list_is_full(make_trainer):
    tr = make_trainer(sample_every=1, sample_length=5)
    out = io.StringIO()
    n = tr.samples.maxlen + 5
    run_headless(tr, max_steps=n, out=out, install_signals=False, log_every=10**6)
    shown = [line for line in out.getvalue().splitlines() if line.startswith("--- sample at step")]
    assert len(shown) == n and shown[-1].startswith(f"--- sample at step {n} ")
