"""Running a source's blocking call in threads of its own, with a deadline.

A fetch that is stuck in a read, or an ``open`` of a ``~/.plan`` on a hung
NFS server, cannot be interrupted; what can be bounded is who waits for it.
So a source hands such a call to its own few threads (``web-fetch-N``,
``passwd-read-N``) and the lookup waits for the result only until its
deadline.  When every thread is busy, a source whose calls are quick
(``passwd``: a burst of queries) waits for one until the deadline, and one
whose calls wait on the network (``web``: all threads busy means the
upstream is slow) fails at once, so the next source answers.  A call that overruns keeps its
thread until it really ends: a hung upstream or disk holds a few threads of
its own source, never the connection threads answering everyone else.

This is the thread-based answer to "a Deferred with a timeout": the caller
blocks in `call`, and the only thing handed between threads is the call and
its `_Outcome`.

`cancel` fails every call still waiting (``stopping``), so a lookup in
progress when the daemon stops is answered "Lookup failed" at once instead
of at its deadline; `stop` then joins the threads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from fingerd.sources.base import Hidden, SourceError
from fingerd.threads import join_all

T = TypeVar("T")

log = logging.getLogger("fingerd.sources")


class _Outcome(Generic[T]):
    """One call's result, handed from the thread that ran it to the lookup waiting for it."""

    def __init__(self, function: Callable[[], T]) -> None:
        self.function = function
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


class Offload:
    """`size` named threads; `call` runs a function there and waits until a deadline."""

    def __init__(self, name: str, size: int, wait_for_thread: bool = True) -> None:
        self.name = name
        self.size = size
        self.wait_for_thread = wait_for_thread
        self._free = threading.Semaphore(size)
        self._calls: queue.SimpleQueue[_Outcome | None] = queue.SimpleQueue()
        self._waiting: set[_Outcome] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{number}", daemon=True) for number in range(1, size + 1)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    def cancel(self) -> None:
        """Fail every call waiting for a thread or a result, and take no more; a second call does nothing."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            waiting = list(self._waiting)
        for outcome in waiting:
            outcome.fail(SourceError("stopping"))
        # A call waiting for a free thread takes this, sees the stop and passes it on.
        self._free.release()
        for _ in self._threads:
            self._calls.put(None)

    def stop(self, deadline: float) -> None:
        """Cancel, then join the threads until ``deadline`` (a call stuck in a read keeps its thread)."""
        self.cancel()
        stuck = join_all(self._threads, deadline)
        if stuck:
            log.warning("%s still busy at shutdown: %s", self.name, ", ".join(thread.name for thread in stuck))

    def call(self, function: Callable[[], T], deadline: float, what: str) -> T:
        """``function()``'s result; SourceError when no thread is free, or no result comes, by ``deadline``."""
        patience = max(0.0, deadline - time.monotonic()) if self.wait_for_thread else 0.0
        if not self._free.acquire(timeout=patience):
            raise SourceError(f"{what}: all {self.size} {self.name} threads stayed busy")
        outcome: _Outcome[T] = _Outcome(function)
        with self._lock:
            if self._stopping:
                self._free.release()
                raise SourceError(f"{what}: stopping")
            self._waiting.add(outcome)
        self._calls.put(outcome)
        try:
            if not outcome.done.wait(max(0.0, deadline - time.monotonic())):
                raise SourceError(f"{what}: no answer in time")
        finally:
            with self._lock:
                self._waiting.discard(outcome)
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[return-value]

    def _work(self) -> None:
        while (outcome := self._calls.get()) is not None:
            if outcome.done.is_set():
                self._free.release()
                continue
            try:
                value = outcome.function()
            except (SourceError, Hidden) as error:
                outcome.fail(error)
            except Exception as error:
                outcome.fail(SourceError(f"{type(error).__name__}: {error}"))
            else:
                outcome.value = value
                outcome.done.set()
            finally:
                self._free.release()
