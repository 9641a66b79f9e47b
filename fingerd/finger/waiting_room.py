"""One thread that holds slow connections so that they cost no worker.

Most finger clients send their query at once and read the reply at once;
the accepting thread answers those straight away.  The rest (a client that
has not sent its line yet, one that reads its reply slowly, one that keeps
sending after its query) would each pin a thread for up to `--timeout` if
a thread waited on it.  Instead they are *parked* here: the waiting room
watches every parked socket with one selector and calls back when the socket
is ready or when its deadline passes.  Three hundred idle clients are three
hundred entries in a selector, not three hundred blocked threads.

A parking is one-shot: the callback runs once, in this thread, and parks the
connection again if it needs more.  Callbacks must not block.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("fingerd.finger")

Callback = Callable[[], None]


@dataclass(order=True)
class _Parking:
    deadline: float
    number: int
    sock: socket.socket = field(compare=False)
    events: int = field(compare=False)
    on_ready: Callback = field(compare=False)
    on_expired: Callback = field(compare=False)
    active: bool = field(default=True, compare=False)


class WaitingRoom:
    """A selector thread with per-socket deadlines."""

    def __init__(self, name: str = "finger-waiting-room") -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._arrivals: deque[_Parking] = deque()
        self._deadlines: list[_Parking] = []
        self._numbers = itertools.count()
        self._parked = 0
        self._stop_at: float | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the selector thread; parkings made before are admitted then."""
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, grace: float) -> None:
        """Let parked connections finish for up to ``grace`` seconds, then expire them."""
        self._stop_at = time.monotonic() + grace
        self._wake()
        self._thread.join(grace + 1)
        if self._thread.is_alive():
            log.error("waiting room did not stop within %.1f s", grace + 1)
            return
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def park(self, sock: socket.socket, events: int, deadline: float, on_ready: Callback, on_expired: Callback) -> None:
        """Call ``on_ready`` once ``sock`` is ready for ``events``, or ``on_expired`` at ``deadline``."""
        self._arrivals.append(_Parking(deadline, next(self._numbers), sock, events, on_ready, on_expired))
        if threading.current_thread() is not self._thread:
            self._wake()

    def _wake(self) -> None:
        try:
            self._wake_writer.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    def _run(self) -> None:
        while True:
            self._admit_arrivals()
            now = time.monotonic()
            if self._stop_at is not None and (self._parked == 0 or now >= self._stop_at):
                self._expire_all()
                return
            self._expire(now)
            for key, _ in self._selector.select(self._select_timeout(now)):
                if key.fileobj is self._wake_reader:
                    self._drain_wakeups()
                    continue
                self._ready(key.data)

    def _select_timeout(self, now: float) -> float:
        timeout = 1.0
        if self._deadlines:
            timeout = min(timeout, self._deadlines[0].deadline - now)
        if self._stop_at is not None:
            timeout = min(timeout, self._stop_at - now)
        return max(timeout, 0.0)

    def _admit_arrivals(self) -> None:
        while self._arrivals:
            parking = self._arrivals.popleft()
            try:
                self._selector.register(parking.sock, parking.events, parking)
            except (KeyError, ValueError, OSError):
                self._call(parking.on_expired)
                continue
            self._parked += 1
            heapq.heappush(self._deadlines, parking)

    def _release(self, parking: _Parking) -> None:
        parking.active = False
        self._parked -= 1
        try:
            self._selector.unregister(parking.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _ready(self, parking: _Parking) -> None:
        if not parking.active:
            return
        self._release(parking)
        self._call(parking.on_ready)

    def _expire(self, now: float) -> None:
        if len(self._deadlines) > 4 * self._parked + 256:
            self._deadlines = [parking for parking in self._deadlines if parking.active]
            heapq.heapify(self._deadlines)
        while self._deadlines and self._deadlines[0].deadline <= now:
            parking = heapq.heappop(self._deadlines)
            if parking.active:
                self._release(parking)
                self._call(parking.on_expired)

    def _expire_all(self) -> None:
        self._admit_arrivals()
        for parking in self._deadlines:
            if parking.active:
                self._release(parking)
                self._call(parking.on_expired)
        self._deadlines.clear()

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    @staticmethod
    def _call(callback: Callback) -> None:
        try:
            callback()
        except Exception:
            log.exception("error in a connection callback")
