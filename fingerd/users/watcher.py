"""Keeping the user table in step with the status file, without polling.

::

    inotify --> watchdog observer --> on_any_event --> note()  (no I/O here)
                                                        |
                               status-reloader thread <-+  waits until the
                               save is finished, then reload(): read,
                               parse, UserTable.replace()

The observer watches the file's *directory* (and, when the file is a
symlink, its target's directory too), because every way of saving a file
shows up there, while a watch on the file itself goes deaf after the first
rename.

When to read depends on what the last event proves:

* a close after writing, a rename onto the file, or a change of mode or
  owner means the file is whole again: read after `settle_complete`, and
  no later than `max_delay` after the first event of a burst;
* a create, modify or delete may be the middle of a save: wait until the
  file has been quiet for `settle_partial`.  A writer that keeps the file
  open and pauses longer than that mid-write will be read in between; one
  that closes or renames is never read half-written.

A rename reaches us through watchdog, which holds the first half of every
rename (``IN_MOVED_FROM``) to pair it with the second.  When its reading
thread meets the first half before the second is queued, it sleeps the
whole pairing delay even once the pair is made, and every later event of
the directory waits behind it: with watchdog's 0.5 s, 75 of 200
back-to-back saves, queried all along, were served half a second late.
`move_pairing` shortens that wait.  A half left unpaired (its mate came
later than that) would be told as a create of the file, a save still
being written, read only after `settle_partial`; so the observer is asked
for full events, in which an unpaired second half is still a rename onto
the file.

A reload that finds the file missing, unreadable or changing under it keeps
the last good table.  Every tick the main loop calls `check()`, which
restarts the observer if it died or its directory was replaced (a watch on
a deleted directory stays silent forever), and every `safety_interval`
compares the file's identity, size, times and mode with the last read: a
cheap net for inotify queue overflows, which silently drop events.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator, Sequence

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

try:  # Linux only: inotify, and the rename pairing of watchdog 7
    from watchdog.observers.inotify import InotifyObserver
    from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper
except ImportError:
    InotifyObserver = InotifyMoveEventGrouper = None

from fingerd.threads import join_all
from fingerd.users.statusfile import Problem, parse_status_file
from fingerd.users.table import UserTable

log = logging.getLogger("fingerd.status")

Signature = tuple[int, ...]
COMPLETE_EVENTS = ("closed", "attrib")
PARTIAL_EVENTS = ("created", "modified", "deleted", "moved")


class _Handler(FileSystemEventHandler):
    """Forwards events to the watcher; never raises into the observer."""

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
    settle_partial = 0.9
    max_delay = 0.5
    safety_interval = 5.0
    max_file_bytes = 64 * 1024 * 1024
    max_logged_problems = 20
    parse_switch_interval = 0.0005
    move_pairing = 0.01

    def __init__(self, path: str, table: UserTable) -> None:
        self.path = os.path.abspath(path)
        self.table = table
        self._wake = threading.Condition()
        self._first_event = 0.0
        self._due = 0.0
        self._stopping = False
        self._reload_lock = threading.Lock()
        self._signature: Signature | None = None
        self._missing_reported = False
        self._next_safety_check = 0.0
        self._observer: BaseObserver | None = None
        self._watched: dict[str, tuple[int, int]] = {}
        self._names: frozenset[str] = frozenset({self.path})
        self._unwatched_reported = False
        self._reloader = threading.Thread(target=self._run_reloader, name="status-reloader", daemon=True)

    # -- lifecycle -----------------------------------------------------

    def start(self) -> None:
        """Load the file once, then watch it."""
        self.reload()
        self._start_observer()
        self._reloader.start()

    def stop(self, deadline: float) -> None:
        """Stop watching and join every thread this watcher started, until ``deadline``."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._stop_observer(deadline)
        if join_all([self._reloader], deadline):
            log.warning("the status-file reloader was still busy at shutdown")

    def alive(self) -> bool:
        return self._reloader.is_alive()

    def check(self) -> None:
        """Keep the watch current; called from the main loop every tick."""
        if not self._watch_is_current():
            self._stop_observer()
            if self._start_observer():
                self.request_reload()
        now = time.monotonic()
        if now >= self._next_safety_check:
            self._next_safety_check = now + self.safety_interval
            if self._current_signature() != self._signature:
                self._schedule_missed()

    # -- the observer --------------------------------------------------

    def _targets(self) -> tuple[frozenset[str], list[str]]:
        """The names to match in events, and the directories that hold them."""
        names = {self.path, os.path.realpath(self.path)}
        return frozenset(names), sorted({os.path.dirname(name) for name in names})

    def _watch_is_current(self) -> bool:
        """False when the observer died, or a watched directory went away.

        A deleted directory ends its watch (the emitter thread exits) while
        the observer lives on; a directory made again may even reuse the
        inode number, so emitters are checked as well as identities.
        """
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        if not all(emitter.is_alive() for emitter in observer.emitters):
            return False
        names, directories = self._targets()
        return names == self._names and self._watched == _identify(directories)

    def _start_observer(self) -> bool:
        names, directories = self._targets()
        identities = _identify(directories)
        if len(identities) != len(directories):
            if not self._unwatched_reported:
                log.warning("directory of %s does not exist; watching starts when it appears", self.path)
                self._unwatched_reported = True
            return False
        for kind in (Observer, PollingObserver):
            observer = self._try_observer(kind, directories)
            if observer is not None:
                self._observer, self._watched, self._names = observer, identities, names
                self._unwatched_reported = False
                return True
        return False

    def _try_observer(self, kind: type[BaseObserver], directories: Sequence[str]) -> BaseObserver | None:
        """Construct, schedule and start one observer; None if any step fails.

        watchdog reads the rename pairing delay from its class when an
        inotify watch is made, so it is set there, just before.
        """
        if InotifyMoveEventGrouper is not None:
            InotifyMoveEventGrouper.delay = self.move_pairing
        observer = None
        try:
            observer = kind(generate_full_events=True) if kind is InotifyObserver else kind()
            observer.name = "status-watcher"
            observer.daemon = True
            for directory in directories:
                observer.schedule(_Handler(self), directory, recursive=False)
            observer.start()
            return observer
        except OSError as error:
            log.warning("cannot watch %s with %s: %s", ", ".join(directories), kind.__name__, error)
            if observer is not None and observer.is_alive():
                observer.stop()
                observer.join()
            return None

    def _stop_observer(self, deadline: float | None = None) -> None:
        """Stop the observer; wait for its thread until ``deadline`` (a second from now when None)."""
        observer, self._observer = self._observer, None
        if observer is not None and observer.is_alive():
            observer.stop()
            if join_all([observer], deadline or time.monotonic() + 1.0):
                log.warning("the status-file observer did not stop in time")

    # -- events --------------------------------------------------------

    def note(self, event: FileSystemEvent) -> None:
        """Schedule a reload if ``event`` may have changed the file."""
        if event.is_directory:
            return
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(getattr(event, "dest_path", "") or "")
        if kind == "moved" and dest in self._names:
            self._schedule(complete=True)
        elif src not in self._names:
            return
        elif kind in COMPLETE_EVENTS:
            self._schedule(complete=True)
        elif kind in PARTIAL_EVENTS:
            self._schedule(complete=False)

    def request_reload(self) -> None:
        """Ask for a reload soon, as if the file had been saved."""
        self._schedule(complete=True)

    def _schedule(self, complete: bool) -> None:
        now = time.monotonic()
        with self._wake:
            if not self._due:
                self._first_event = now
            if complete:
                self._due = min(now + self.settle_complete, self._first_event + self.max_delay)
            else:
                self._due = now + self.settle_partial
            self._wake.notify()

    def _schedule_missed(self) -> None:
        """A change no event told of: read once quiet, unless a reload is due already.

        The safety check also runs while saves come in quick succession,
        and then finds the file changed since the last read; were it to
        reschedule, it would push the reload an event asked for back by
        `settle_partial`.
        """
        with self._wake:
            if self._due:
                return
        self._schedule(complete=False)

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
                self.reload()
            except Exception:
                log.exception("unexpected error reloading %s", self.path)

    # -- reading -------------------------------------------------------

    def _current_signature(self) -> Signature | None:
        try:
            return _signature(os.stat(self.path))
        except OSError:
            return None

    def reload(self) -> None:
        """Read, parse and publish the file now; keep the old table on failure."""
        with self._reload_lock:
            try:
                data, signature = self._read()
            except FileNotFoundError:
                self._report_missing()
                return
            except _Changing as changing:
                self._schedule(complete=changing.replaced)
                return
            except OSError as error:
                log.error("cannot read status file %s: %s; keeping the last table", self.path, _reason(error))
                self._signature = self._current_signature()
                return
            self._missing_reported = False
            self._signature = signature
            with _brief_gil_turns(self.parse_switch_interval):
                parsed = parse_status_file(data)
                self.table.replace(parsed.users)
            self._log_problems(parsed.problems, parsed.invalid_utf8)
            log.info("loaded %d users from %s", len(parsed.users), self.path)

    def _report_missing(self) -> None:
        self._signature = None
        if self._missing_reported:
            return
        self._missing_reported = True
        snapshot = self.table.snapshot()
        if snapshot.generation == 0:
            log.warning("status file %s does not exist; starting with no users", self.path)
        else:
            log.warning("status file %s is missing; serving the last table (%d users)", self.path, len(snapshot.users))

    def _read(self) -> tuple[bytes, Signature]:
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            chunks = []
            size = 0
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_file_bytes:
                    raise OSError(errno.EFBIG, f"larger than {self.max_file_bytes} bytes")
            after = os.fstat(fd)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        if _signature(before) != _signature(after) or len(data) != after.st_size:
            raise _Changing(replaced=not _same_file(self.path, after))
        return data, _signature(after)

    def _log_problems(self, problems: list[Problem], invalid_utf8: bool) -> None:
        if invalid_utf8:
            log.warning("%s: bytes that are not UTF-8 were replaced", self.path)
        for problem in problems[: self.max_logged_problems]:
            log.warning("%s: %s", self.path, problem)
        hidden = len(problems) - self.max_logged_problems
        if hidden > 0:
            log.warning("%s: %d more problems not shown", self.path, hidden)


class _Changing(Exception):
    """The file changed while it was being read.

    ``replaced``: the path names another file now, or none (a save renamed
    over it, which also changes the old file's ctime as it is unlinked):
    read again soon.  Otherwise it is being written in place: read once quiet.
    """

    def __init__(self, replaced: bool) -> None:
        super().__init__()
        self.replaced = replaced


def _same_file(path: str, info: os.stat_result) -> bool:
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)


@contextlib.contextmanager
def _brief_gil_turns(interval: float) -> Iterator[None]:
    """Let other threads have the GIL every ``interval`` s while a big file is parsed.

    Parsing 100,000 lines is pure Python and takes a few hundred ms; with the
    default 5 ms switch interval a query answered meanwhile waited up to
    250 ms for the GIL (measured), with 0.5 ms about 50 ms, and 8 to 18 ms
    once the parser stopped feeding the garbage collector an object per
    entry (see `parse_status_file`; ``bench/run.py``, pinned).  Reloads are
    serialised, so putting the process-wide value back is safe.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _signature(info: os.stat_result) -> Signature:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_mode)


def _identify(directories: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Device and inode of each existing directory, to notice replacements."""
    identities = {}
    for directory in directories:
        try:
            info = os.stat(directory)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode):
            identities[directory] = (info.st_dev, info.st_ino)
    return identities


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
