"""Keys as data: what the help, the command palette and each screen's line of keys say about a key comes
from that screen's ``BINDINGS``, so no list of keys is written twice (and the README's key table is
checked against the same bindings by the tests).

A binding carries two texts: ``description``, the footer's short label ("lr×2"), and ``tooltip``, what
the key does in words ("Learning rate ×2"), which the help's key table and the command palette show.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from textual.binding import Binding
from textual.keys import format_key


def key_names(keys: str) -> tuple[str, ...]:
    """A binding's keys as a person types them: ``"plus,equals_sign"`` → ``("+", "=")``, ``"ctrl+s"`` →
    ``("ctrl+s",)``; ``shift+t`` beside ``T`` is the same key (some terminals report it so) and is left out."""
    given = [k.strip() for k in keys.split(",") if k.strip()]
    names: list[str] = []
    for key in given:
        modifiers, _, base = key.rpartition("+")
        if modifiers == "shift" and len(base) == 1 and base.upper() in given:
            continue
        name = f"{modifiers}+{format_key(base)}" if modifiers else format_key(base)
        if name not in names:
            names.append(name)
    return tuple(names)


@dataclass(frozen=True)
class KeyAction:
    """One action and every key bound to it."""

    keys: tuple[str, ...]
    action: str
    description: str  # the binding's tooltip (else its footer label)
    id: str | None = None

    @property
    def key_text(self) -> str:
        return ", ".join(self.keys)


def key_actions(bindings: Iterable[Binding]) -> list[KeyAction]:
    """One entry per action, in the order of the bindings: the keys of every binding that runs it, and what it
    does (the first binding's tooltip, else its description)."""
    entries: dict[str, KeyAction] = {}
    for b in bindings:
        keys = key_names(b.key)
        if b.action in entries:
            old = entries[b.action]
            entries[b.action] = KeyAction(old.keys + tuple(k for k in keys if k not in old.keys), old.action,
                                          old.description, old.id)
        else:
            entries[b.action] = KeyAction(keys, b.action, b.tooltip or b.description, b.id)
    return list(entries.values())


def key_table(bindings: Iterable[Binding]) -> str:
    """The keys as a Markdown table, ``| key | action |``, one row per action."""
    rows = ["| key | action |", "|---|---|"]
    rows += [f"| {a.key_text} | {a.description} |" for a in key_actions(bindings)]
    return "\n".join(rows)


def key_of(bindings: Iterable[Binding], action: str) -> str:
    """The first key that runs ``action``, as typed (for a sentence that names it)."""
    return next(names[0] for b in bindings if b.action == action and (names := key_names(b.key)))


def key_hints(bindings: Iterable[Binding]) -> str:
    """A screen's line of keys, ``"←/→ step · v verify · esc/d back"``: each binding's keys and its footer label;
    bindings of one group share its label (``Binding.Group``)."""
    parts: list[tuple[list[str], str]] = []
    groups: dict[str, int] = {}
    for b in bindings:
        keys = list(key_names(b.key))
        if b.group is not None and b.group.description in groups:
            parts[groups[b.group.description]][0].extend(keys)
            continue
        if b.group is not None:
            groups[b.group.description] = len(parts)
        parts.append((keys, b.group.description if b.group is not None else b.description))
    return " · ".join(f"{'/'.join(keys)} {label}" for keys, label in parts)


__all__ = ["KeyAction", "key_actions", "key_hints", "key_names", "key_of", "key_table"]
