"""A small pool of named worker threads for jobs that may block.

The finger service answers from memory on its accepting thread; what might
block (a `~/.plan` on a slow disk, a command, a URL, a forwarded query) is
handed to this pool instead, the thread-based stand-in for a Deferred.  The
pool is fixed in size, so a source that hangs can hold at most `size`
threads, and each job is bounded by its own timeout.

A job is a callable, and optionally a second one that cancels it; a job
that raises is logged and the worker goes on.  `stop` lets running jobs
finish until the deadline and cancels every job still queued, so its
connection is answered and closed, not leaked.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger("fingerd.workers")

Call = Callable[[], None]
Job = tuple[Call, Call | None]


class WorkerPool:
    """`size` named threads taking jobs from one queue; `start()`, `submit()`, `stop()`."""

    least_wait = 0.05
    """Seconds to wait for each thread at stop even past the deadline: an idle one is that quick."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
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

    def submit(self, run: Call, cancel: Call | None = None) -> None:
        """Queue ``run``; after `stop` it is cancelled at once instead."""
        with self._lock:
            if not self._stopping:
                self._jobs.put((run, cancel))
                return
        self._cancel((run, cancel))

    def stop(self, deadline: float) -> None:
        """Finish running jobs until ``deadline``; drop the queued ones; join the threads."""
        with self._lock:
            self._stopping = True
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(max(self.least_wait, deadline - time.monotonic()))
        stuck = [thread.name for thread in self._threads if thread.is_alive()]
        if stuck:
            log.warning("%s still busy at shutdown: %s", self.name, ", ".join(stuck))
        self._drain()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._stopping:
                self._cancel(job)
                continue
            try:
                job[0]()
            except Exception:
                log.exception("%s: a job failed", self.name)

    def _drain(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._cancel(job)

    def _cancel(self, job: Job) -> None:
        cancel = job[1]
        if cancel is None:
            return
        try:
            cancel()
        except Exception:
            log.exception("%s: cancelling a job failed", self.name)
