"""TidyFooter: Textual's Footer without its memory leak.

Textual's ``Footer`` recomposes whenever the active bindings change (every dialog opened or
closed, every focus change) and binds each new ``FooterKey`` to ``Footer.compact`` with
``data_bind``. That registers a watcher on the footer which keeps a reference to the key; Textual
drops watchers of removed widgets only when ``compact`` changes, which it never does here. So
every recompose kept ~20 dead keys with their render caches alive: about 0.5 MB each time the
help screen was opened and closed (found by the soak benchmark, benchmarks/soak.py).

It also fits its width: on a terminal too narrow for every key, the least needed keys are left
out first (``DROP_ORDER``), so help and quit always show whole instead of being cut off at the edge.
"""

from __future__ import annotations

from textual import events
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey, FooterLabel

#: Actions whose keys the footer leaves out first when the terminal is too narrow for all of them
#: (help and quit always stay; every key is listed in the help screen and the command palette).
DROP_ORDER = ("sample", "hyperparams", "temperature", "cycle_clip", "lr", "save", "toggle_pause")


class TidyFooter(Footer):
    """A Footer that forgets the watchers of the keys its recompose removed."""

    _widths: dict[Widget, int] = {}

    async def recompose(self) -> None:
        await super().recompose()
        self.prune_watchers()
        self._widths = {}
        self.call_after_refresh(self.fit)

    def on_resize(self, event: events.Resize) -> None:
        self.fit()

    def entries(self) -> list[tuple[str, list[Widget]]]:
        """The footer's entries in order: (action name, the widgets that show it); a group's label
        belongs to the group before it."""
        out: list[tuple[str, list[Widget]]] = []
        for child in self.children:
            if isinstance(child, FooterLabel) and out:
                out[-1][1].append(child)
                continue
            key = child if isinstance(child, FooterKey) else next(iter(child.query(FooterKey)), None)
            out.append((key.action.split("(")[0] if key is not None else "", [child]))
        return out

    def fit(self) -> None:
        """Show every entry that fits, leaving out those first in ``DROP_ORDER``."""
        entries = self.entries()
        if not self._widths:  # measured once per recompose, while every entry is shown
            if not all(w.outer_size.width for _, ws in entries for w in ws):
                return  # not laid out yet
            self._widths = {w: w.outer_size.width + w.styles.margin.width for _, ws in entries for w in ws}
        width = {name: sum(self._widths.get(w, 0) for w in ws) for name, ws in entries}
        total, drop = sum(width.values()), set()
        for name in DROP_ORDER:
            if total <= self.size.width:
                break
            if name in width:
                drop.add(name)
                total -= width[name]
        for name, ws in entries:
            for w in ws:
                w.display = name not in drop

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
