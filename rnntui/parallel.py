"""How one training step uses the CPU cores: the batch split into parts, BLAS single-threaded in each.

NumPy's BLAS (OpenBLAS) spreads a matrix product over its threads when the product is large
enough. The products of one RNN time step (B×H by H×H) are small, the tanh and the elementwise
ops between them run on one core whatever BLAS does, and on two cores OpenBLAS's threading makes
a 32×128·128×128 product several times slower than one thread does (on a machine whose other
core is busy, hundreds of times). So rnntui keeps BLAS on one thread and can instead split a
large batch: each part is the forward and backward pass of B/P whole sequences (all T steps,
every product and tanh), and the P gradients are summed.

How the batch is split depends only on its shape, so results are the same bit for bit however
the parts are run (checkpoints resume exactly). How they are run is chosen as training goes by
a :class:`Pacer`: at once on the cores, or one after the other on the training thread — whichever
took less time lately, trying the other now and then. On an idle machine the cores win; when
other programs keep them busy, a helper thread is often descheduled (or preempted holding the
GIL) and the step waits for it, and one thread is faster.

The policy is the environment variable ``RNNTUI_THREADS`` (read when a model is created) or the
``threads`` argument of :class:`rnntui.model.CharRNN`:

``auto`` (default)  split a batch into up to as many parts as there are cores when each part still
                    gets large products (≥ :data:`MIN_PART_ROWS` sequences and ≥ :data:`MIN_PART_PRODUCT`
                    multiply-adds per time step): smaller ones lose more to per-call overhead
                    and the GIL than a second core gains
a number ``P``      split into up to P parts (``1``: never split)
``blas``            no split and no change to BLAS threading (NumPy's default behaviour)

BLAS is put on one thread for the whole process by the first pass (see :func:`single_threaded_blas`),
except under ``blas``. Without the ``threadpoolctl`` package BLAS threading cannot be changed, and
every policy falls back to ``blas``.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

#: ``auto`` gives a part at least this many sequences (fewer rows: the products lose efficiency) ...
MIN_PART_ROWS = 32
#: ... and at least this many multiply-adds in each time step's product (part rows × H × H).
MIN_PART_PRODUCT = 1 << 21

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


def num_parts(policy: str | int, batch_size: int, hidden_size: int) -> int:
    """How many parts to split a batch of ``batch_size`` sequences into (a function of the shape only)."""
    if policy == "blas":
        return 1
    if policy != "auto":
        return max(1, min(int(policy), batch_size))
    parts = min(cpu_count(), batch_size // MIN_PART_ROWS)
    while parts > 1 and (batch_size // parts) * hidden_size * hidden_size < MIN_PART_PRODUCT:
        parts -= 1
    return max(1, parts)


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


def run(tasks: Sequence[Callable[[], object]], threads: int | None = None) -> list:
    """Run ``tasks`` on up to ``threads`` threads (this one and pool threads; default one per task); their
    results, in order.

    Every thread takes the next task not yet taken until none is left, so a pool thread that the
    system schedules late leaves its share to this thread instead of holding up the step. Which
    thread runs a task never changes its result.
    """
    threads = len(tasks) if threads is None else min(threads, len(tasks))
    if threads <= 1:
        return [task() for task in tasks]
    results: list = [None] * len(tasks)
    taken = itertools.count()  # next() of a count is atomic: each task is taken once

    def work():
        while (i := next(taken)) < len(tasks):
            results[i] = tasks[i]()

    helpers = [_get_pool(threads - 1).submit(work) for _ in range(threads - 1)]
    try:
        work()
    finally:
        for f in helpers:  # waits for every task, also when one in this thread failed
            f.result()
    return results


class Pacer:
    """Chooses how many threads run the parts of one batch shape: the faster way lately.

    Both ways are timed (an exponential average of the seconds per pass); the slower one is
    tried again every :attr:`explore_every` passes, so a change in the machine's load is noticed.
    """

    explore_every = 40

    def __init__(self, parts: int):
        self.options = (parts, 1)
        self.seconds: dict[int, float | None] = dict.fromkeys(self.options)
        self.passes = 0
        self._warm = False  # the first pass of a shape also fills new buffers: not timed

    def choose(self) -> int:
        self.passes += 1
        for n in self.options:
            if self.seconds[n] is None:
                return n
        best, other = sorted(self.options, key=self.seconds.__getitem__)
        return other if self.passes % self.explore_every == 0 else best

    def record(self, threads: int, seconds: float) -> None:
        if not self._warm:
            self._warm = True
            self.passes = 0
            return
        if threads in self.seconds:
            old = self.seconds[threads]
            self.seconds[threads] = seconds if old is None else 0.7 * old + 0.3 * seconds
