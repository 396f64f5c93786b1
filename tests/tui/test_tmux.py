"""The real ``rnntui`` command in a real terminal (tmux, 80×24): keys, detach and stop, SIGTERM, SIGINT and
SIGHUP of the viewer, kill -9 of the viewer and of the run, the whole cycle of a run that outlives its
terminal (start detached, runs, watch, detach, watch again, stop), and two viewers of one run.

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

#: The status bar's state and step (the run's name may stand between them, where the bar has room).
STATE_STEP = re.compile(r"(RUNNING|PAUSED|FINISHED|STOPPED)\s+(?:run \S+ |\S+ )?step (\d+)")


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
        env = f"OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 RNNTUI_HOME={shlex.quote(os.environ['RNNTUI_HOME'])} "
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
        m = STATE_STEP.search(self.screen())
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

    def new_window(self, *rnntui_args: str, name: str) -> None:
        """A second session on the same server running ``rnntui ARGS`` (a second terminal)."""
        env = f"OPENBLAS_NUM_THREADS=1 RNNTUI_HOME={shlex.quote(os.environ['RNNTUI_HOME'])} "
        run = " ".join(shlex.quote(a) for a in [*_command(), *rnntui_args])
        self.tmux("new-session", "-d", "-x", "80", "-y", "24", "-s", name, f"cd {shlex.quote(str(self.tmp))} && "
                  f"{env}{run}; echo EXIT=$? > {self.tmp / (name + '.exit')}; sleep 120")

    def screen_of(self, name: str) -> str:
        return self.tmux("capture-pane", "-p", "-t", name, check=False)


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


def rnntui(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``rnntui ARGS`` as a command run from a shell, its output captured."""
    return subprocess.run([*_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def _runs(cwd: Path) -> dict:
    import json

    p = rnntui("runs", "--json", cwd=cwd)
    assert p.returncode == 0, p.stderr
    return {r["name"]: r for r in json.loads(p.stdout)}


def _run_pid(name: str) -> int | None:
    from rnntui.runs.folders import find_run

    return (find_run(name).record or {}).get("pid")


def _kill_runs() -> None:
    """Whatever run a test left training is killed (its process is not the test's child any more)."""
    from rnntui.runs.folders import list_runs

    for entry in list_runs():
        pid = (entry.record or {}).get("pid")
        if entry.alive and pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


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
        _kill_runs()


ARGS = ["tiny.txt", "--hidden-size", "16", "--batch-size", "4", "--seq-length", "10", "--no-mouse"]


def test_keys_then_q_and_stop_in_a_real_terminal(tmux):
    tmux.start(*ARGS, "--checkpoint", "run.npz", "--metrics", "m.jsonl", "--log-every", "5", "--name", "keys")
    tmux.wait_step(5)
    screen = tmux.wait_text("q quit")
    assert "loss" in screen and "gradients" in screen
    tmux.keys("p")
    tmux.wait_text("PAUSED")
    paused = tmux.step()
    time.sleep(0.5)
    assert tmux.step() == paused
    tmux.keys("?")
    tmux.wait_text("what you are looking at")  # the help screen
    tmux.keys("Escape")  # (alone: escape followed at once by q would read as alt+q)
    tmux._wait(lambda: "what you are looking at" not in tmux.screen(), "the help to close")
    tmux.keys("q")
    tmux.wait_text("d detach")
    tmux.keys("s")  # stop the run: it saves, then ends
    assert tmux.exit_code() == 0
    assert load_checkpoint(tmux.tmp / "run.npz").step == paused
    assert f"the run has stopped at step {paused}; checkpoint: run.npz (step {paused})" in tmux.screen()
    assert (tmux.tmp / "m.jsonl").read_text().count("\n") == paused // 5  # the run honours --metrics
    assert _runs(tmux.tmp)["keys"]["state"] == "stopped"
    _restored(tmux)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGHUP", "kill -9"])
def test_the_viewer_going_away_leaves_the_run_training(tmux, how):
    """A signal to the viewer detaches it; a hang-up (killing the tmux session is what a dropped SSH connection
    does) and kill -9 end it: in every case the run goes on, and stops and saves when told to."""
    tmux.start(*ARGS, "--name", "on")
    seen = tmux.wait_step(3)
    if how == "SIGHUP":
        tmux.tmux("kill-session", "-t", tmux.session)
    else:
        os.kill(tmux.pid, signal.SIGKILL if how == "kill -9" else getattr(signal, how))
    tmux._wait(lambda: not tmux.alive(), "the viewer to end")
    if how in ("SIGTERM", "SIGINT"):
        assert tmux.exit_code() == 0
        screen = tmux.screen()
        assert "detached from run on at step" in screen and "rnntui watch on" in screen
        _restored(tmux)
    first = _runs(tmux.tmp)["on"]
    assert first["state"] == "running"
    tmux._wait(lambda: _runs(tmux.tmp)["on"]["step"] > max(first["step"], seen) + 20, "the run to train on")
    p = rnntui("stop", "on", cwd=tmux.tmp)
    assert p.returncode == 0, p.stderr
    step = load_checkpoint(Path(os.environ["RNNTUI_HOME"]) / "runs" / "on" / "checkpoint.npz").step
    assert p.stdout.strip().endswith(f"(step {step})") and step > seen + 20


def test_a_run_outlives_its_terminal_the_whole_cycle(tmux):
    """Start detached, runs lists it, watch, detach, the step grows, watch again (the whole history on the
    plot), stop: the checkpoint is at the step stop reports."""
    p = rnntui(*ARGS, "--detach", "--name", "cycle", cwd=tmux.tmp)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("run cycle started in the background (pid ") and "rnntui watch cycle" in p.stdout
    tmux._wait(lambda: (_runs(tmux.tmp)["cycle"]["step"] or 0) > 10, "the run to train")
    assert _runs(tmux.tmp)["cycle"]["state"] == "running"
    tmux.start("watch", "--no-mouse")  # the live run started last
    first = tmux.wait_step(20)
    tmux.keys("q")
    tmux.wait_text("d detach")
    tmux.keys("d")
    assert tmux.exit_code() == 0
    assert "detached from run cycle at step" in tmux.screen()
    tmux._wait(lambda: _runs(tmux.tmp)["cycle"]["step"] > first + 50, "the step to keep growing")
    tmux.new_window("watch", "cycle", "--no-mouse", name="again")
    again = tmux._wait(lambda: (m := STATE_STEP.search(tmux.screen_of("again"))) and m.group(1) == "RUNNING"
                       and int(m.group(2)),
                       "the second watch")
    assert again > first + 50
    assert "raw" in tmux.screen_of("again")  # the loss plot, drawn from the run's whole history
    p = rnntui("stop", "cycle", cwd=tmux.tmp)
    assert p.returncode == 0, p.stderr
    m = re.search(r"the run has stopped at step (\d+); checkpoint: (\S+) \(step (\d+)\)", p.stdout)
    assert m and m.group(1) == m.group(3), p.stdout
    assert load_checkpoint(m.group(2)).step == int(m.group(1)) >= again
    tmux._wait(lambda: "the run has stopped at step" in tmux.screen_of("again"), "the watcher to hear of it")
    assert "RUNNING" not in tmux.screen_of("again") and "step" in tmux.screen_of("again")  # its final screen
    tmux.tmux("send-keys", "-t", "again", "q")
    tmux._wait(lambda: (tmux.tmp / "again.exit").exists(), "the watcher to close")
    assert (tmux.tmp / "again.exit").read_text().strip() == "EXIT=0"
    assert _runs(tmux.tmp)["cycle"]["state"] == "stopped"


def test_two_viewers_at_once_one_pausing(tmux):
    p = rnntui(*ARGS, "--detach", "--name", "two", cwd=tmux.tmp)
    assert p.returncode == 0, p.stderr
    tmux.start("watch", "two", "--no-mouse")
    tmux.wait_step(5)
    tmux.new_window("watch", "two", "--no-mouse", name="other")
    tmux._wait(lambda: "RUNNING" in tmux.screen_of("other"), "the second viewer")
    tmux.keys("p")
    tmux.wait_text("PAUSED")
    tmux._wait(lambda: "PAUSED" in tmux.screen_of("other"), "the other viewer to show the pause")
    paused = tmux.step()
    time.sleep(1.0)
    assert tmux.step() == paused and f"step {paused}" in tmux.screen_of("other")
    tmux.tmux("send-keys", "-t", "other", "space")  # either viewer can resume it
    tmux._wait(lambda: tmux.step() > paused, "the run to resume")
    assert rnntui("stop", "two", cwd=tmux.tmp).returncode == 0


def test_kill_9_of_the_run_while_watched(tmux):
    """The run dies: the viewer says so and keeps the final screen; runs says died, with the last periodic
    checkpoint intact."""
    tmux.start(*ARGS, "--name", "dies", "--checkpoint-every", "20")
    tmux.wait_step(50)
    ckpt = Path(os.environ["RNNTUI_HOME"]) / "runs" / "dies" / "checkpoint.npz"
    tmux._wait(lambda: ckpt.exists(), "a periodic save")
    os.kill(_run_pid("dies"), signal.SIGKILL)
    tmux.wait_text("lost")
    screen = tmux.screen()
    assert "runs" in screen and "step" in screen  # it says how to find out, the figures stay
    row = tmux._wait(lambda: (r := _runs(tmux.tmp)["dies"])["state"] == "died" and r, "runs to say died")
    saved = load_checkpoint(ckpt)
    assert saved.step % 20 == 0 and saved.step == row["saved_step"]
    tmux.keys("q")
    assert tmux.exit_code() == 1
    # it goes on from that checkpoint, under its name, over the socket file the killed process left behind
    p = rnntui(*ARGS, "--resume", "dies", "--detach", cwd=tmux.tmp)
    assert p.returncode == 0 and f"from step {saved.step}" in p.stdout, p.stderr
    assert _runs(tmux.tmp)["dies"]["state"] == "running"
    assert rnntui("stop", "dies", cwd=tmux.tmp).returncode == 0
