"""Keeping the user table in step with the status file, without polling.

::

    inotify --> watchdog observer --> on_any_event --> note()  (no I/O here)
                                                        |
                               status-reloader thread <-+  waits for the
                               burst to settle, then reload(): read, parse,
                               UserTable.replace()

The observer watches the file's *directory*, because every way of saving a
file (in place, append, rename over it, delete and recreate) shows up there,
while a watch on the file itself goes deaf after the first rename.

A burst of events is folded into one reload.  How long to wait depends on
what the last event proves: a close-after-write or a rename onto the file
means the writer is done (`settle_complete`); a create, modify or delete may
be the middle of a save (`settle_partial`).  No reload waits longer than
`max_delay` after the first event of a burst, so a busy writer cannot
starve readers of news.

A reload that finds the file missing, unreadable or changing under it keeps
the last good table.  The main loop calls `check()`, which restarts a dead
observer and compares the file's inode, size and mtime every
`safety_interval` seconds: a cheap net for inotify queue overflows, which
silently drop events.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from fingerd.users.statusfile import parse_status_file
from fingerd.users.table import UserTable

log = logging.getLogger("fingerd.status")

Signature = tuple[int, int, int, int]


class _Handler(FileSystemEventHandler):
    """Forwards events about one path; never raises into the observer."""

    def __init__(self, watcher: StatusFileWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self.watcher.note(event)
        except Exception:  # a raising handler kills the observer for good
            log.exception("error handling a file event")


class StatusFileWatcher:
    """Loads the status file into a `UserTable` and keeps it current."""

    settle_complete = 0.01
    settle_partial = 0.25
    max_delay = 0.5
    safety_interval = 5.0
    max_file_bytes = 64 * 1024 * 1024
    max_logged_problems = 20

    def __init__(self, path: str, table: UserTable) -> None:
        self.path = os.path.abspath(path)
        self.directory = os.path.dirname(self.path)
        self.table = table
        self._wake = threading.Condition()
        self._first_event = 0.0
        self._due = 0.0
        self._stopping = False
        self._reload_lock = threading.Lock()
        self._signature: Signature | None = None
        self._missing_reported = False
        self._next_safety_check = 0.0
        self._observer: Observer | PollingObserver | None = None
        self._reloader = threading.Thread(target=self._run_reloader, name="status-reloader", daemon=True)

    # -- lifecycle -----------------------------------------------------

    def start(self) -> None:
        """Load the file once, then watch it."""
        self.reload()
        self._start_observer()
        self._reloader.start()

    def stop(self) -> None:
        """Stop watching and join every thread this watcher started."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
        if self._reloader.is_alive():
            self._reloader.join(timeout=2)

    def check(self) -> None:
        """Periodic health check, called from the main loop."""
        now = time.monotonic()
        if now < self._next_safety_check:
            return
        self._next_safety_check = now + self.safety_interval
        if self._observer is None or not self._observer.is_alive():
            if self._observer is not None:
                log.error("status file watcher stopped; starting it again")
            self._start_observer()
            self.request_reload()
        elif self._current_signature() != self._signature:
            self.request_reload()

    def _start_observer(self) -> None:
        handler = _Handler(self)
        for kind in (Observer, PollingObserver):
            observer = kind()
            observer.name = "status-watcher"
            observer.daemon = True
            try:
                observer.schedule(handler, self.directory, recursive=False)
                observer.start()
            except FileNotFoundError:
                log.warning("directory %s does not exist; status file not watched yet", self.directory)
                self._observer = None
                return
            except OSError as error:
                log.warning("cannot watch %s with %s (%s); trying the next way", self.directory, kind.__name__, error)
                continue
            self._observer = observer
            return
        self._observer = None

    # -- events --------------------------------------------------------

    def note(self, event: FileSystemEvent) -> None:
        """Schedule a reload if ``event`` may have changed the file."""
        if event.is_directory:
            return
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(getattr(event, "dest_path", "") or "")
        if kind == "moved" and dest == self.path:
            self._schedule(self.settle_complete)
        elif src != self.path:
            return
        elif kind == "closed":
            self._schedule(self.settle_complete)
        elif kind in ("created", "modified", "deleted", "moved"):
            self._schedule(self.settle_partial)

    def request_reload(self) -> None:
        """Ask for a reload soon, as if the file had changed (SIGHUP, checks)."""
        self._schedule(self.settle_complete)

    def _schedule(self, settle: float) -> None:
        now = time.monotonic()
        with self._wake:
            if not self._due:
                self._first_event = now
            self._due = min(now + settle, self._first_event + self.max_delay)
            self._wake.notify()

    def _run_reloader(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and (not self._due or time.monotonic() < self._due):
                    timeout = None if not self._due else self._due - time.monotonic()
                    self._wake.wait(timeout)
                if self._stopping:
                    return
                self._due = 0.0
            try:
                if not self.reload():
                    self._retry_if_changing()
            except Exception:
                log.exception("unexpected error reloading %s", self.path)

    def _retry_if_changing(self) -> None:
        if self._current_signature() is not None:
            self._schedule(self.settle_partial)

    # -- reading -------------------------------------------------------

    def _current_signature(self) -> Signature | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return _signature(info)

    def reload(self) -> bool:
        """Read, parse and publish the file now; keep the old table on failure.

        Returns False when the file was caught changing and should be read
        again, True otherwise.
        """
        with self._reload_lock:
            try:
                data, signature = self._read()
            except FileNotFoundError:
                self._report_missing()
                return True
            except _Changing:
                return False
            except OSError as error:
                log.error("cannot read status file %s: %s; keeping the last table", self.path, _reason(error))
                self._signature = self._current_signature()
                return True
            self._missing_reported = False
            self._signature = signature
            parsed = parse_status_file(data)
            self._log_problems(parsed.problems, parsed.invalid_utf8)
            self.table.replace(parsed.users)
            log.info("loaded %d users from %s", len(parsed.users), self.path)
            return True

    def _report_missing(self) -> None:
        self._signature = None
        if self._missing_reported:
            return
        self._missing_reported = True
        count = len(self.table.snapshot().users)
        log.warning("status file %s is missing; serving the last table (%d users)", self.path, count)

    def _read(self) -> tuple[bytes, Signature]:
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            if before.st_size > self.max_file_bytes:
                raise OSError(errno.EFBIG, f"larger than {self.max_file_bytes} bytes")
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        if _signature(before) != _signature(after) or len(data) != after.st_size:
            raise _Changing
        return data, _signature(after)

    def _log_problems(self, problems: list, invalid_utf8: bool) -> None:
        if invalid_utf8:
            log.warning("%s: bytes that are not UTF-8 were replaced", self.path)
        for problem in problems[: self.max_logged_problems]:
            log.warning("%s: %s", self.path, problem)
        hidden = len(problems) - self.max_logged_problems
        if hidden > 0:
            log.warning("%s: %d more problems not shown", self.path, hidden)


class _Changing(Exception):
    """The file changed while it was being read."""


def _signature(info: os.stat_result) -> Signature:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
