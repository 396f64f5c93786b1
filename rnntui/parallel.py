"""How one training step uses the CPU cores: the batch split over threads, BLAS single-threaded in each.

NumPy's BLAS (OpenBLAS) spreads a matrix product over its threads when the product is large
enough. The products of one RNN time step (B×H by H×H) are small, the tanh and the elementwise
ops between them run on one core whatever BLAS does, and on two cores OpenBLAS's threading makes
a 32×128·128×128 product several times slower than one thread does. So during a pass rnntui keeps
BLAS on one thread and instead splits the batch: each of P threads runs the forward and backward
pass of B/P whole sequences (all T steps, every product and tanh) and the P gradients are summed.
Only one hand-over per step, and both cores stay busy through the tanh as well. How the batch
is split depends only on its shape, never on which thread runs which part or when, so results
are the same bit for bit however busy the machine is (checkpoints resume exactly).

The policy is the environment variable ``RNNTUI_THREADS`` (read when a model is created) or the
``threads`` argument of :class:`rnntui.model.CharRNN`:

``auto`` (default)  split a batch into up to as many parts as there are cores, when each part gets
                    at least :data:`MIN_PART_ROWS` sequences; BLAS single-threaded during a pass
a number ``P``      split into up to P parts (``1``: no split), BLAS single-threaded during a pass
``blas``            no split and no change to BLAS threading (NumPy's default behaviour)

BLAS is put on one thread for the whole process by the first pass (see :func:`single_threaded_blas`).
Without the ``threadpoolctl`` package BLAS threading cannot be changed, and ``auto`` falls back
to ``blas``.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

#: A part gets at least this many sequences: smaller products gain too little to pay for the hand-over.
MIN_PART_ROWS = 8
#: ... and at least this many multiply-adds per step (T·B·H·(H+V)); below it one thread is faster.
MIN_SPLIT_WORK = 4_000_000

ENV = "RNNTUI_THREADS"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_policy(value: str | int | None) -> str | int:
    """``"auto"``, ``"blas"`` or a positive number of parts, from an argument or ``RNNTUI_THREADS``."""
    if value is None:
        value = os.environ.get(ENV, "auto")
    text = str(value).strip().lower()
    if text in ("auto", "blas"):
        return text if text == "blas" or _blas_controller() is not None else "blas"
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"threads must be auto, blas or a positive number, got {value!r}") from None
    if n < 1:
        raise ValueError(f"threads must be auto, blas or a positive number, got {value!r}")
    return n if _blas_controller() is not None else "blas"


def num_parts(policy: str | int, batch_size: int, work: int) -> int:
    """How many parts to split a batch of ``batch_size`` into (each part gets B // P or B // P + 1 rows)."""
    if policy == "blas":
        return 1
    limit = cpu_count() if policy == "auto" else int(policy)
    if policy == "auto" and work < MIN_SPLIT_WORK:
        return 1
    return max(1, min(limit, batch_size // MIN_PART_ROWS if policy == "auto" else batch_size))


def split(batch_size: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges ``(b0, b1)`` covering 0 … batch_size, as equal as possible."""
    edges = [batch_size * i // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


# -- BLAS threads ------------------------------------------------------------------

_controller = None
_blas_single = False


def _blas_controller():
    """threadpoolctl's controllers of the loaded BLAS libraries (found once), or None without threadpoolctl."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = ()
        else:
            _controller = tuple(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _controller or None


def single_threaded_blas() -> None:
    """Put BLAS on one thread, for the rest of the process (done once, by a model's first pass).

    Not undone after each pass: OpenBLAS's worker threads, once woken by a multi-threaded call,
    can keep a loaded 2-core machine so busy that single-threaded calls from other threads run
    many times slower for seconds afterwards. ``RNNTUI_THREADS=blas`` leaves BLAS alone.
    """
    global _blas_single
    if not _blas_single:
        for lib in _blas_controller() or ():
            lib.set_num_threads(1)
        _blas_single = True


# -- running the parts -------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _get_pool(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rnntui-part")
        return _pool


def run(tasks: Sequence[Callable[[], object]]) -> list:
    """Run ``tasks`` on this thread and on pool threads at once; their results, in order.

    Every thread takes the next task not yet taken until none is left, so a pool thread that the
    system schedules late (another program busy on the other core) leaves its share to this
    thread instead of holding up the step. Which thread runs a task never changes its result.
    """
    if len(tasks) == 1:
        return [tasks[0]()]
    results: list = [None] * len(tasks)
    taken = itertools.count()  # next() of a count is atomic: each task is taken once

    def work():
        while (i := next(taken)) < len(tasks):
            results[i] = tasks[i]()

    helpers = [_get_pool(len(tasks) - 1).submit(work) for _ in tasks[1:]]
    try:
        work()
    finally:
        for f in helpers:  # waits for every task, also when one in this thread failed
            f.result()
    return results
