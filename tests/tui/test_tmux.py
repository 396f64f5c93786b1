"""The real ``rnntui`` command in a real terminal (tmux, 80×24): keys, quit, SIGTERM, SIGINT and SIGHUP.

Each test uses its own tmux server (``tmux -L NAME``), polls with generous bounded timeouts for
slow machines, and kills its server and any process it started when it ends. Skipped when tmux
is not installed.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rnntui.checkpoint import load as load_checkpoint

pytestmark = [
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminals"),
]

TIMEOUT = 30.0  # seconds for anything to happen, on a slow machine
_ids = itertools.count()
CORPUS = (
    "the quick brown fox jumps over the lazy dog. a stitch in time saves nine.\n"
    "all that glitters is not gold; the early bird catches the worm!\n"
) * 60


def _command() -> list[str]:
    """The installed ``rnntui`` script of this interpreter (else the same code via ``python -m``)."""
    exe = Path(sys.executable).parent / "rnntui"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "rnntui"]


class Tmux:
    """One tmux server with one 80×24 session running ``rnntui``, and the files it leaves."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.socket = f"rnntui-test-{os.getpid()}-{next(_ids)}"
        self.session = "t"
        self.exit_file = tmp / "exit.txt"
        self.stty_file = tmp / "stty.txt"
        self.pid: int | None = None

    def tmux(self, *args: str, check: bool = True) -> str:
        p = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30)
        if check and p.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {p.stderr}")
        return p.stdout

    def start(self, *rnntui_args: str) -> None:
        env = "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "
        run = " ".join(shlex.quote(a) for a in [*_command(), *rnntui_args])
        # after rnntui: its exit code, the terminal's modes (restored?), and a pause to look at the pane
        script = (f"cd {shlex.quote(str(self.tmp))} && {env}{run}; echo EXIT=$? > {self.exit_file}; "
                  f"stty -a > {self.stty_file}; sleep 120")
        self.tmux("-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "24", "-s", self.session, script)
        shell = int(self.tmux("list-panes", "-t", self.session, "-F", "#{pane_pid}").strip())
        self.pid = self._wait(lambda: _child_of(shell), "the rnntui process")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session, check=False)

    def flag(self, name: str) -> str:
        return self.tmux("display", "-p", "-t", self.session, f"#{{{name}}}", check=False).strip()

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.session, *keys)

    def step(self) -> int:
        m = re.search(r"(RUNNING|PAUSED|FINISHED)\s+step (\d+)", self.screen())
        return int(m.group(2)) if m else -1

    def wait_step(self, n: int) -> int:
        return self._wait(lambda: self.step() if self.step() >= n else None, f"step {n} on screen")

    def wait_text(self, text: str) -> str:
        return self._wait(lambda: self.screen() if text in self.screen() else None, repr(text))

    def exit_code(self) -> int:
        line = self._wait(lambda: self.exit_file.exists() and self.exit_file.read_text().strip() or None, "exit")
        return int(line.removeprefix("EXIT="))

    def alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{self.pid}").exists() and "zombie" not in _status(self.pid)

    def _wait(self, probe, what: str, timeout: float = TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; screen:\n{self.screen()}")
            time.sleep(0.1)

    def close(self) -> None:
        self.tmux("kill-server", check=False)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)


def _child_of(pid: int) -> int | None:
    """The first child process of ``pid``, started by any of its threads (the app starts its training
    process from a worker thread); threads in the order of their ids, so the main thread's child comes first.

    The same walk as ``benchmarks/soak.py:child_of``: keep the two alike (tests and benchmarks do not import
    each other)."""
    try:
        tasks = sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda p: int(p.name))
    except OSError:
        return None
    for task in tasks:
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        if kids:
            return int(kids[0])
    return None


def test_child_of_finds_a_child_started_by_a_worker_thread():
    if not Path("/proc/self/task").exists():
        pytest.skip("needs /proc")
    script = ("import subprocess, threading, time\n"
              "threading.Thread(target=lambda: print(subprocess.Popen(['sleep', '60']).pid, flush=True)).start()\n"
              "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        kid = int(parent.stdout.readline())
        try:
            assert _child_of(parent.pid) == kid  # the main thread has no child: only the worker's counts
        finally:
            os.kill(kid, signal.SIGKILL)
    finally:
        parent.kill()
        parent.wait()


def test_child_of_is_the_soak_benchmarks_walk():
    """benchmarks/soak.py cannot be imported here: its child_of is compared as code (docstrings aside)."""
    import ast
    import inspect
    import textwrap

    def body(tree, name):
        fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)
        return [ast.dump(stmt) for stmt in fn.body[1:]]  # [0] is the docstring

    soak = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"
    if not soak.exists():
        pytest.skip("no benchmarks folder beside the tests")
    ours = ast.parse(textwrap.dedent(inspect.getsource(_child_of)))
    assert body(ast.parse(soak.read_text(encoding="utf-8")), "child_of") == body(ours, "_child_of")


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "gone"


def _restored(t: Tmux) -> None:
    """The terminal is back to normal: out of the app's alternate screen, no mouse capture, cooked mode."""
    t._wait(lambda: t.stty_file.exists() and t.stty_file.read_text(), "stty output")
    modes = t.stty_file.read_text().split()
    assert "icanon" in modes and "echo" in modes and "-icanon" not in modes and "-echo" not in modes, modes
    assert t.flag("alternate_on") == "0"
    assert t.flag("mouse_any_flag") == "0"


@pytest.fixture
def tmux(tmp_path):
    if not Path("/proc/self/task").exists():
        pytest.skip("needs /proc to find the process")
    (tmp_path / "tiny.txt").write_text(CORPUS)
    t = Tmux(tmp_path)
    try:
        yield t
    finally:
        t.close()


ARGS = ["tiny.txt", "--hidden-size", "16", "--batch-size", "4", "--seq-length", "10", "--no-mouse"]


def test_keys_and_quit_in_a_real_terminal(tmux):
    tmux.start(*ARGS, "--checkpoint", "run.npz", "--metrics", "m.jsonl", "--log-every", "5")
    tmux.wait_step(5)
    screen = tmux.screen()
    assert "loss" in screen and "gradients" in screen and "q quit" in screen
    tmux.keys("p")
    tmux.wait_text("PAUSED")
    paused = tmux.step()
    time.sleep(0.5)
    assert tmux.step() == paused
    tmux.keys("?")
    tmux.wait_text("what you are looking at")  # the help screen
    tmux.keys("Escape")  # (alone: escape followed at once by q would read as alt+q)
    tmux._wait(lambda: "what you are looking at" not in tmux.screen(), "the help to close")
    tmux.keys("q")  # with --checkpoint: saves, then quits
    assert tmux.exit_code() == 0
    assert load_checkpoint(tmux.tmp / "run.npz").step == paused
    assert f"checkpoint: run.npz (step {paused})" in tmux.screen()
    assert (tmux.tmp / "m.jsonl").read_text().count("\n") == paused // 5  # the app honours --metrics
    _restored(tmux)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_saves_and_restores_the_terminal(tmux, sig):
    tmux.start(*ARGS, "--checkpoint", "run.npz")
    seen = tmux.wait_step(3)
    os.kill(tmux.pid, sig)
    assert tmux.exit_code() == 0
    step = load_checkpoint(tmux.tmp / "run.npz").step
    assert step >= seen
    assert f"checkpoint: run.npz (step {step})" in tmux.screen()
    assert not tmux.alive()
    _restored(tmux)


def test_sighup_when_the_terminal_goes_away_saves_and_ends(tmux):
    """Killing the tmux session is what a dropped SSH connection does: SIGHUP, and no terminal."""
    tmux.start(*ARGS)  # no --checkpoint: the unsaved run goes to the corpus-named default
    seen = tmux.wait_step(3)
    tmux.tmux("kill-session", "-t", tmux.session)
    tmux._wait(lambda: not tmux.alive(), "the process to end after SIGHUP")
    ckpt = tmux._wait(lambda: (tmux.tmp / "tiny.rnntui.npz").exists() and load_checkpoint(tmux.tmp / "tiny.rnntui.npz"),
                      "the checkpoint")
    assert ckpt.step >= seen


def test_kill_9_of_the_app_leaves_the_training_process_to_save_and_end(tmux):
    """No signal handler runs on SIGKILL: the training process sees its pipe close and saves by itself."""
    tmux.start(*ARGS, "--checkpoint", "run.npz")
    seen = tmux.wait_step(3)
    trainer = tmux._wait(lambda: _child_of(tmux.pid), "the training process")
    os.kill(tmux.pid, signal.SIGKILL)
    tmux._wait(lambda: "zombie" in _status(trainer) or _status(trainer) == "gone", "the training process to end")
    ckpt = tmux._wait(lambda: (tmux.tmp / "run.npz").exists() and load_checkpoint(tmux.tmp / "run.npz"),
                      "the checkpoint")
    assert ckpt.step >= seen
