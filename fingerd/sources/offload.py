"""Running a source's blocking call in threads of its own, with a deadline.

A fetch that is stuck in a read, or an ``open`` of a ``~/.plan`` on a hung
NFS server, cannot be interrupted; what can be bounded is who waits for it.
So a source hands such a call to its own few threads (``web-fetch-N``,
``passwd-read-N``) and the lookup waits for the result only until its
deadline.  A call that overruns keeps its thread and its slot until it
really ends, and a lookup that finds every slot taken fails at once instead
of queueing: a hung upstream or disk holds a few threads of its own source,
never the lookup workers that answer everyone else.

This is the thread-based answer to "a Deferred with a timeout".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from fingerd.sources.base import Hidden, SourceError
from fingerd.workers import WorkerPool

T = TypeVar("T")


class _Outcome(Generic[T]):
    """One call's result, handed from the thread that ran it to the lookup waiting for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None


class Offload:
    """`size` named threads; `call` runs a function there and waits until a deadline."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self._slots = threading.BoundedSemaphore(size)
        self._pool = WorkerPool(name, size)

    def start(self) -> None:
        self._pool.start()

    def alive(self) -> bool:
        return self._pool.alive()

    def stop(self, deadline: float) -> None:
        self._pool.stop(deadline)

    def call(self, function: Callable[[], T], deadline: float, what: str) -> T:
        """``function()``'s result, or SourceError when every slot is busy or the deadline passes."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SourceError(f"{what}: no time left")
        if not self._slots.acquire(blocking=False):
            raise SourceError(f"{what}: all {self.size} {self.name} threads are busy")
        outcome: _Outcome[T] = _Outcome()
        self._pool.submit(lambda: self._run(function, outcome), lambda: self._cancel(outcome))
        if not outcome.done.wait(remaining):
            raise SourceError(f"{what}: no answer within {remaining:.1f} s")
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[return-value]

    def _run(self, function: Callable[[], T], outcome: _Outcome[T]) -> None:
        try:
            outcome.value = function()
        except (SourceError, Hidden) as error:
            outcome.error = error
        except Exception as error:
            outcome.error = SourceError(f"{type(error).__name__}: {error}")
        finally:
            self._slots.release()
            outcome.done.set()

    def _cancel(self, outcome: _Outcome[T]) -> None:
        """A call dropped by a stopping daemon: free its slot and its waiter."""
        outcome.error = SourceError("stopping")
        self._slots.release()
        outcome.done.set()
