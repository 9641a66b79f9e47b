"""The user table: the one piece of state every service shares.

Readers (the ``file`` source, for every service) and the
single writer (the status-file reloader) meet only here.  A reload builds a
complete new `Snapshot` off to the side and swaps it in under the lock, so
a reader holds the lock for one pointer copy, never waits for a reload, and
never sees half a table.  A snapshot is never changed after it is built.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from fingerd.users.statusfile import Status


def _fold_index(users: Mapping[str, Status]) -> dict[str, str]:
    """Map lower-cased names to names, leaving out ambiguous ones.

    Names are ASCII, and so is the folding: full Unicode case-folding would
    let the Kelvin sign find ``k``.
    """
    index: dict[str, str] = {}
    clashes: set[str] = set()
    for name in users:
        folded = name.lower()
        if folded in index:
            clashes.add(folded)
        index[folded] = name
    for folded in clashes:
        del index[folded]
    return index


@dataclass(frozen=True)
class Snapshot:
    """One immutable generation of the table."""

    users: Mapping[str, Status] = field(default_factory=dict)
    folded: Mapping[str, str] = field(default_factory=dict)
    generation: int = 0

    def lookup(self, name: str) -> tuple[str, Status] | None:
        """Find a user by exact name, else by unambiguous ASCII case-insensitive name."""
        status = self.users.get(name)
        if status is not None:
            return name, status
        if not name.isascii():
            return None
        real = self.folded.get(name.lower())
        if real is None:
            return None
        return real, self.users[real]


class UserTable:
    """Lock-protected holder of the current `Snapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot = Snapshot()

    def snapshot(self) -> Snapshot:
        """The current generation; keep it for the whole of one answer."""
        with self._lock:
            return self._snapshot

    def replace(self, users: Mapping[str, Status]) -> Snapshot:
        """Publish a new table built from ``users``; return it.

        The old table is let go after the lock is released: freeing 100,000
        entries takes milliseconds, and readers need not wait for it.
        """
        frozen = dict(users)
        folded = _fold_index(frozen)
        with self._lock:
            old = self._snapshot
            self._snapshot = Snapshot(MappingProxyType(frozen), MappingProxyType(folded), old.generation + 1)
            new = self._snapshot
        del old
        return new

    def lookup(self, name: str) -> tuple[str, Status] | None:
        """Look ``name`` up in the current generation."""
        return self.snapshot().lookup(name)
