"""The ``command`` source: the tutorial's "run finger locally", without a shell.

``--command "/usr/bin/finger -m"`` is split like a shell would split it
(`shlex`), once, at start-up; the user name is appended as one more
argument.  Nothing is ever interpreted by a shell, and the name has already
been checked against the name pattern, so it cannot begin with ``-`` and
be read as an option.

The program runs with an empty environment (a fixed ``PATH`` and
``LANG``), no standard input, ``/`` as its directory and its own process
group, so that on a timeout the whole group is killed, grandchildren
included.  Its output is read up to `max_output` bytes; past that it is
cut, marked and the program killed.  It knows a name when it exits 0 with
some output.  At most `max_running` programs run at once; a lookup that
finds them all busy waits for one until its deadline, then fails.  A slow
program so holds only the connections that asked for it: other users'
lookups never wait behind it.  When the daemon stops, every program still
running is killed and its lookup fails ("Lookup failed"), never "No such
user".
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

from fingerd.sources.base import Record, SourceError, status_record, text_lines


class CommandSource:
    """Runs one configured program per lookup."""

    name = "command"
    blocking = True
    max_output = 64 * 1024
    max_running = 4
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}

    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(self.max_running)
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._stopping = False

    def lookup(self, name: str, deadline: float) -> Record | None:
        deadline = min(deadline, time.monotonic() + self.timeout)
        if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise SourceError(f"{self.max_running} commands already running")
        try:
            if time.monotonic() >= deadline:
                raise SourceError("no time left to run the command")
            output, status = self._run(name, deadline)
        finally:
            self._slots.release()
        if status != 0 or not output.strip():
            return None
        return status_record(name, text_lines(output, self.max_output))

    def names(self, deadline: float) -> None:
        """A command answers for one name at a time; it cannot list."""
        return None

    def who(self, deadline: float = 0.0) -> None:
        """Statuses only: who is logged in is not known here."""
        return None

    def start(self) -> None:
        """Programs start per lookup."""

    def alive(self) -> bool:
        return True

    def cancel(self) -> None:
        """Kill every program still running, and start no more: their lookups fail at once."""
        with self._lock:
            self._stopping = True
            running = list(self._running)
        for process in running:
            _kill_group(process)

    def stop(self, deadline: float) -> None:
        """No program outlives the daemon; the lookups that ran them reap them."""
        self.cancel()

    def _run(self, name: str, deadline: float) -> tuple[bytes, int]:
        process = self._spawn(name)
        try:
            output, cut = _read_output(process, deadline, self.max_output)
            if cut:
                _kill_group(process)
            status = process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise SourceError(f"{self.argv[0]} did not finish in time") from None
        finally:
            _kill_group(process)
            process.wait()
            process.stdout.close()  # type: ignore[union-attr]
            with self._lock:
                self._running.discard(process)
        if self._stopping and status < 0:
            raise SourceError(f"{self.argv[0]} was stopped with the daemon")
        return output, 0 if cut else status

    def _spawn(self, name: str) -> subprocess.Popen:
        with self._lock:
            if self._stopping:
                raise SourceError("stopping")
            try:
                process = subprocess.Popen(
                    [*self.argv, name],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    cwd="/",
                    env=self.environment,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as error:
                raise SourceError(f"cannot run {self.argv[0]}: {error.strerror}") from None
            self._running.add(process)
            return process


def _read_output(process: subprocess.Popen, deadline: float, limit: int) -> tuple[bytes, bool]:
    """Read stdout until EOF, the deadline or ``limit`` + 1 bytes; True when cut at the limit."""
    stream = process.stdout
    assert stream is not None
    chunks: list[bytes] = []
    size = 0
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while size <= limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise subprocess.TimeoutExpired(process.args, 0)
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                return b"".join(chunks), False
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks), True


def _kill_group(process: subprocess.Popen) -> None:
    """Kill the program and everything it started, even what it left running when it exited.

    Linux keeps a process id reserved while any process uses it as a group
    id, so while something of the program's group lives the id names only
    that group; once the group is empty the kill finds nobody (or, in the
    microseconds before the id is handed out again, nothing it may signal).
    """
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
