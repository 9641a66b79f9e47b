"""The finger access log: one line per query, written in batches off the hot path.

A `logging` call costs about 20 µs on these machines, a fifth of what
answering a query costs, and the accepting thread would pay it for every
client.  `record` only appends a tuple; the ``access-log`` thread turns what
accumulated into lines every `interval` seconds, formatted exactly like
every other log line, and writes them with one call.  A batch is what
10 ms bring (a few hundred lines at full load, under a millisecond of
work); batches of 64 with a GIL hand-over after each cost three times the
CPU (this thread's, under load: 4 to 5 µs a query, against 1.1 to 1.4 µs
in one batch; bench/README.md), so a batch is cut
only at `chunk` lines, and the interpreter's own switch interval keeps
the accepting thread's wait short.  With syslog, where
each line must be its own message, it falls back to one `logging` record
per line, still off the accepting thread.

Finger traffic repeats itself: the same few names asked from the same
few addresses.  So the text of a line is kept by what it was made from, up
to `cache_entries` of them, and a busy server formats each distinct query
once; the timestamp is likewise made once per millisecond.

A line is the peer, the query quoted (escaped, cut to `LOGGED_QUERY_CHARS`
with the size read when longer) or ``-`` when there was none to read, and
the outcome: ``192.0.2.1 "/W alice" found``.

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

from fingerd.daemon.logs import Logs
from fingerd.threads import join_all
from fingerd.protocol import split_line
from fingerd.render import visible_bytes

CHANNEL = "fingerd.access"
LOGGED_QUERY_CHARS = 120
LOGGED_BYTES = LOGGED_QUERY_CHARS * 4
"""How much of what a client sent the access log looks at."""
_PLAIN = bytes(range(0x20, 0x7F)).replace(b'"', b"").replace(b"\\", b"")
"""Bytes a logged query may hold as they are; anything else is escaped."""

Entry = tuple[str, "bytes | None", int, str]
"""What one access line is made of: host, the start of the query, bytes read, outcome."""


def logged_query(head: bytes, size: int) -> str:
    """The query line, escaped and shortened for the access log.

    ``head`` is the start of what the client sent, at most `LOGGED_BYTES`;
    ``size`` is how much it sent in all.  Quotes and backslashes are
    escaped too, so a query cannot end its own quoted field and forge the
    rest of a log line.
    """
    line, _ = split_line(head)
    if not line.translate(None, _PLAIN):
        text = line.decode("ascii")
    else:
        text = visible_bytes(line.replace(b"\\", b"\\\\")).replace('"', '\\"')
    if len(text) > LOGGED_QUERY_CHARS or size > LOGGED_BYTES:
        text = text[:LOGGED_QUERY_CHARS] + f"...({size} bytes read)"
    return text


def access_line(host: str, head: bytes | None, size: int, outcome: str) -> str:
    """One access-log line: peer, the query quoted (``-`` when there was none to read), outcome.

    Made from the host without the port, and from at most `LOGGED_BYTES`
    of the query, so that lines repeat and can be cached.  IPv4-mapped IPv6
    is shown as IPv4.
    """
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    if head is None:
        return f"{host} - {outcome}"
    return f'{host} "{logged_query(head, size)}" {outcome}'


class AccessLog:
    """Collects access lines and writes them from its own thread; `start()`, `stop()`."""

    interval = 0.01
    chunk = 4096
    last_moment = 0.5
    cache_entries = 4096
    name = "access-log"

    def __init__(self, logs: Logs) -> None:
        self.logs = logs
        self.logger = logging.getLogger(CHANNEL)
        self.enabled = self.logger.isEnabledFor(logging.INFO)
        self._pending: deque[tuple[float, Entry]] = deque()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._lines: dict[Entry, str] = {}
        self._stamp_second = -1
        self._stamp = ""
        self._stamp_milli = -1
        self._stamp_text = ""

    def record(self, host: str, query: bytes | None, size: int, outcome: str) -> None:
        """Note one access, to be written later by this log's thread (see `access_line`).

        ``query`` is the start of what the client sent (at most
        `LOGGED_BYTES` are looked at), None when it sent nothing to read;
        ``size`` is how much it sent.  The caller pays for a tuple;
        formatting and escaping run in the log's thread.
        """
        if self.enabled:
            self._pending.append((time.time(), (host, None if query is None else query[:LOGGED_BYTES], size, outcome)))

    def start(self) -> None:
        self._thread.start()

    def stop(self, deadline: float) -> None:
        """Write what is left, from this log's thread, joined until ``deadline`` (or a moment, if that has passed).

        The lines written last are those of a stop: the queries it answered
        "Lookup failed" or "Timed out", so they get their moment even when
        another service used up the deadline.
        """
        self._stopping.set()
        join_all([self._thread], max(deadline, time.monotonic() + self.last_moment))

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self._flush_logged()
        self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:
            logging.getLogger("fingerd").exception("cannot write the access log")

    def flush(self) -> None:
        """Write every line recorded so far, a `chunk` at a time."""
        while self._pending:
            self._write(self._take(self.chunk))

    def _take(self, count: int) -> list[tuple[float, str]]:
        """Up to ``count`` recorded accesses, as lines."""
        entries = []
        lines = self._lines
        while self._pending and len(entries) < count:
            moment, entry = self._pending.popleft()
            text = lines.get(entry)
            if text is None:
                if len(lines) >= self.cache_entries:
                    lines.clear()
                text = lines[entry] = access_line(*entry)
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
