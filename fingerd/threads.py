"""A thread per connection, bounded, reaped and joined: a `socketserver` mixin.

For services whose requests are rare or short (the web view, the setters),
a thread per connection is the plain design.  This mixin adds what the
standard `ThreadingMixIn` lacks for a daemon on the open internet:

* a limit (`max_connections`); past it `busy_reply` is sent at once and the
  connection closed, instead of queueing;
* a lifetime: a connection still open `lifetime` seconds after it was
  accepted is shut down by the accepting thread (checked every
  `poll_interval` in `service_actions`), so a client that trickles one byte
  at a time cannot hold a thread for long;
* named threads, and a `stop(deadline)` that stops accepting, lets running
  requests finish until the deadline, then shuts their sockets so that every
  thread ends, and joins them;
* `bind()` before the privilege drop and `start()` (listen, serve) after.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from dataclasses import dataclass

from fingerd.listen import EarlyBindMixIn, peer_text
from fingerd.slots import Slots

log = logging.getLogger("fingerd")


@dataclass
class _Active:
    sock: socket.socket
    expires: float


class BoundedThreadsMixIn(EarlyBindMixIn):
    """Mix in before a `socketserver` server class; call `init_threads` first in ``__init__``."""

    max_connections = 64
    poll_interval = 0.2
    lifetime = 20.0
    busy_reply: bytes | None = None
    name = "conn"

    def init_threads(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.slots = Slots(self.max_connections)
        self._numbers = itertools.count(1)
        self._active: dict[threading.Thread, _Active] = {}
        self._active_lock = threading.Lock()
        self._acceptor = threading.Thread(
            target=self.serve_forever,  # type: ignore[attr-defined]
            args=(self.poll_interval,),
            name=f"{self.name}-acceptor",
            daemon=True,
        )

    # -- lifecycle -----------------------------------------------------

    def start(self) -> None:
        self.server_activate()  # type: ignore[attr-defined]
        self._acceptor.start()

    def alive(self) -> bool:
        return self._acceptor.is_alive()

    def stop(self, deadline: float) -> None:
        """Stop accepting; let requests run until ``deadline``; then end and join them."""
        if self._acceptor.is_alive():
            self.shutdown()  # type: ignore[attr-defined]
            self._acceptor.join()
        self.server_close()  # type: ignore[attr-defined]
        for thread in self._threads():
            thread.join(max(0.0, deadline - time.monotonic()))
        self._cut(self._threads())
        for thread in self._threads():
            thread.join(1.0)

    # -- one connection, in its own thread -----------------------------

    def process_request(self, request: socket.socket, client_address: object) -> None:
        if not self.slots.take():
            self.turn_away(request, client_address)
            return
        thread = threading.Thread(target=self._run, args=(request, client_address), daemon=True)
        thread.name = f"{self.name}-{next(self._numbers)}"
        with self._active_lock:
            self._active[thread] = _Active(request, time.monotonic() + self.lifetime)
        try:
            thread.start()
        except RuntimeError:
            log.error("%s: cannot start a thread for %s", self.name, peer_text(client_address))
            with self._active_lock:
                self._active.pop(thread, None)
            self.slots.give_back()
            self.shutdown_request(request)  # type: ignore[attr-defined]

    def track(self, sock: socket.socket) -> None:
        """Call from a connection's thread when its socket object changes (TLS)."""
        with self._active_lock:
            active = self._active.get(threading.current_thread())
            if active is not None:
                active.sock = sock

    def _run(self, request: socket.socket, client_address: object) -> None:
        try:
            self.handle_connection(request, client_address)
        except Exception:
            log.exception("error answering %s", peer_text(client_address))
        finally:
            with self._active_lock:
                self._active.pop(threading.current_thread(), None)
            self.slots.give_back()

    def handle_connection(self, request: socket.socket, client_address: object) -> None:
        """Serve one connection in its own thread, then close it."""
        try:
            self.finish_request(request, client_address)  # type: ignore[attr-defined]
        finally:
            self.shutdown_request(request)  # type: ignore[attr-defined]

    def turn_away(self, request: socket.socket, client_address: object) -> None:
        """Past the limit: `busy_reply` without waiting, then close."""
        log.info("%s - busy", peer_text(client_address))
        if self.busy_reply:
            request.setblocking(False)
            try:
                request.send(self.busy_reply)
            except OSError:
                pass
        self.shutdown_request(request)  # type: ignore[attr-defined]

    # -- the reaper ----------------------------------------------------

    def service_actions(self) -> None:
        """Shut down connections that outlived `lifetime` (runs in the acceptor)."""
        now = time.monotonic()
        with self._active_lock:
            expired = [thread for thread, active in self._active.items() if active.expires <= now]
        self._cut(expired)

    def _threads(self) -> list[threading.Thread]:
        with self._active_lock:
            return list(self._active)

    def _cut(self, threads: list[threading.Thread]) -> None:
        with self._active_lock:
            sockets = [self._active[thread].sock for thread in threads if thread in self._active]
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
