"""Workarounds for memory that Textual (8.x) keeps after widgets are gone.

Found with the soak benchmark (benchmarks/soak.py), which showed the app's RSS creeping up by
25–30 MB an hour while it trained and a user now and then opened a dialog:

* ``Footer`` kept every key widget it ever made — fixed by :class:`widgets.footer.TidyFooter`.
* ``StylesCache.get_inner_outer`` is an ``lru_cache`` on an *instance* method, so its cache keys
  hold up to 1024 ``StylesCache`` objects — one per widget ever rendered (every dialog, toast,
  footer key), each with its cached lines. :func:`release_render_caches` empties that cache; it
  only maps two colours to two styles, so refilling it costs nothing.
"""

from __future__ import annotations


def release_render_caches() -> None:
    """Let go of the render caches Textual keeps for widgets that no longer exist."""
    try:
        from textual._styles_cache import StylesCache

        StylesCache.get_inner_outer.cache_clear()
    except (ImportError, AttributeError):  # another Textual: nothing to work around, or not this way
        pass
