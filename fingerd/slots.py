"""Counting open connections against a limit, shared by the network services."""

from __future__ import annotations

import threading


class Slots:
    """A non-blocking counter: `take` says no at the limit instead of waiting."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._free <= 0:
                return False
            self._free -= 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._free += 1
