"""The finger access log: one line per query, written in batches off the hot path.

A `logging` call costs about 20 µs on these machines, a fifth of what
answering a query costs, and the accepting thread would pay it for every
client.  `record` only appends a tuple; the ``access-log`` thread turns what
accumulated into lines every `interval` seconds (short, so that no batch
holds the GIL long enough to delay a query), formatted exactly like every
other log line, and writes them with one call.  With syslog, where
each line must be its own message, it falls back to one `logging` record
per line, still off the accepting thread.

Finger traffic repeats itself: the same few names asked from the same
few addresses.  So the text of a line is kept by what it was made from, up
to `cache_entries` of them, and a busy server formats each distinct query
once; the timestamp is likewise made once per millisecond.

Every line starts with the client's address and a space (``-`` where there
is none).  With ``--no-log-peers`` that first word is written as ``-``, here
rather than at each call site, and in this thread rather than the
accepting one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from fingerd.daemon.logs import Logs

CHANNEL = "fingerd.access"


class AccessLog:
    """Collects access lines and writes them from its own thread; `start()`, `stop()`."""

    interval = 0.01
    chunk = 64
    cache_entries = 4096
    name = "access-log"

    def __init__(self, logs: Logs) -> None:
        self.logs = logs
        self.logger = logging.getLogger(CHANNEL)
        self.enabled = self.logger.isEnabledFor(logging.INFO)
        self._pending: deque[tuple[float, Callable[..., str], tuple]] = deque()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._lines: dict[tuple, str] = {}
        self._stamp_second = -1
        self._stamp = ""
        self._stamp_milli = -1
        self._stamp_text = ""

    def record(self, describe: Callable[..., str], *details: object) -> None:
        """Note one access: ``describe(*details)`` makes the line (escaped, peer first), later, in this thread.

        The accepting thread pays for a tuple; formatting and escaping run
        here, while that thread waits in its system calls.  ``details`` must
        be hashable, and should repeat between clients (the host, not the
        host and port), since lines are cached by them.
        """
        if self.enabled:
            self._pending.append((time.time(), describe, details))

    def start(self) -> None:
        self._thread.start()

    def stop(self, deadline: float = 0.0) -> None:
        self._stopping.set()
        self._thread.join()
        self.flush()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.flush()
            except Exception:
                logging.getLogger("fingerd").exception("cannot write the access log")

    def flush(self) -> None:
        """Write every line recorded so far, a `chunk` at a time."""
        while self._pending:
            self._write(self._take(self.chunk))
            time.sleep(0)

    def _take(self, count: int) -> list[tuple[float, str]]:
        """Up to ``count`` recorded accesses, as lines.

        Each chunk ends with `time.sleep(0)` in `flush`, which hands the GIL
        back at once: a waiting accepting thread never waits for a whole
        batch to be formatted.
        """
        entries = []
        lines = self._lines
        while self._pending and len(entries) < count:
            moment, describe, details = self._pending.popleft()
            key = (describe, details)
            text = lines.get(key)
            if text is None:
                if len(lines) >= self.cache_entries:
                    lines.clear()
                text = lines[key] = describe(*details)
            entries.append((moment, text))
        return entries

    def _write(self, entries: list[tuple[float, str]]) -> None:
        if not entries:
            return
        if not self.logs.log_peers:
            entries = [(moment, "- " + text.partition(" ")[2]) for moment, text in entries]
        stream = self.logs.stream()
        if stream is None:
            for _, text in entries:
                self.logger.info("%s", text)
            return
        before, _, after = self.logs.prefix_format().partition("{text}")
        start, timed, middle = before.partition("{time}")
        if not timed:
            self.logs.write("".join(f"{before}{text}{after}\n" for _, text in entries))
            return
        stamp = self._timestamp
        self.logs.write("".join(f"{start}{stamp(moment)}{middle}{text}{after}\n" for moment, text in entries))

    def _timestamp(self, moment: float) -> str:
        """``2026-11-23 22:40:00,123``, as logging's default asctime writes it.

        Made once per millisecond: a busy server writes many lines in each.
        """
        second = int(moment)
        milli = int((moment - second) * 1000)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S,", time.localtime(second))
            self._stamp_milli = -1
        if milli != self._stamp_milli:
            self._stamp_milli = milli
            self._stamp_text = f"{self._stamp}{milli:03d}"
        return self._stamp_text
