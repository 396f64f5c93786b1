"""TidyFooter: Textual's Footer without its memory leak.

Textual's ``Footer`` recomposes whenever the active bindings change (every dialog opened or
closed, every focus change) and binds each new ``FooterKey`` to ``Footer.compact`` with
``data_bind``. That registers a watcher on the footer which keeps a reference to the key; Textual
drops watchers of removed widgets only when ``compact`` changes, which it never does here. So
every recompose kept ~20 dead keys with their render caches alive: about 0.5 MB each time the
help screen was opened and closed (found by the soak benchmark, benchmarks/soak.py).
"""

from __future__ import annotations

from textual.widgets import Footer


class TidyFooter(Footer):
    """A Footer that forgets the watchers of the keys its recompose removed."""

    async def recompose(self) -> None:
        await super().recompose()
        self.prune_watchers()

    def prune_watchers(self) -> int:
        """Drop watchers whose widget is closing or closed (what Textual does on the next change). Returns
        how many remain."""
        watchers = getattr(self, "__watchers", None)  # Textual's private store; absent → nothing to do
        if not isinstance(watchers, dict):
            return 0
        remaining = 0
        for callbacks in watchers.values():
            callbacks[:] = [(node, cb) for node, cb in callbacks
                            if not (getattr(node, "_closing", False) or getattr(node, "_closed", False))]
            remaining += len(callbacks)
        return remaining
