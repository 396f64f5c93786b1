"""Workarounds for memory that Textual (8.x) keeps after widgets are gone.

Found with the soak benchmark (benchmarks/soak.py), which showed the app's RSS creeping up by
25–30 MB an hour while it trained and a user now and then opened a dialog:

* ``Footer`` kept every key widget it ever made (each ``FooterKey``'s ``data_bind`` watcher stays on
  the long-lived footer: https://github.com/Textualize/textual/issues/6666) — fixed by
  :class:`widgets.footer.TidyFooter`.
* ``StylesCache.get_inner_outer`` is an ``lru_cache`` on an *instance* method, so its cache keys
  hold up to 1024 ``StylesCache`` objects — one per widget ever rendered (every dialog, toast,
  footer key), each with its cached lines (https://github.com/Textualize/textual/issues/6665).
  :func:`release_render_caches` empties that cache; it only maps two colours to two styles, so
  refilling it costs nothing.
* What remains is native: Python-level memory stays flat (tracemalloc, 5 minutes of redraws and
  dialogs), while the C heaps grow slowly with the churn of redraws and of the snapshots arriving
  from the training process. :func:`trim_heap` hands freed heap pages back to the system (glibc's
  ``malloc_trim``), and the app asks for snapshots only as often as it redraws.
"""

from __future__ import annotations

import ctypes
import ctypes.util


def release_render_caches() -> None:
    """Let go of the render caches Textual keeps for widgets that no longer exist."""
    try:
        from textual._styles_cache import StylesCache

        StylesCache.get_inner_outer.cache_clear()
    except (ImportError, AttributeError):  # another Textual: nothing to work around, or not this way
        pass


_libc = None


def trim_heap() -> None:
    """Return free C-heap memory to the system (glibc only; elsewhere nothing to do)."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


def tidy() -> None:
    """Everything above, as one periodic chore of the app."""
    release_render_caches()
    trim_heap()
