"""A thread per connection, bounded and joined: a `socketserver` mixin.

For services whose requests are rare or short (the web view, the setters),
a thread per connection is the plain design.  This mixin adds what the
standard `ThreadingMixIn` lacks for a daemon: a limit (`max_connections`,
past which `turn_away` answers at once instead of queueing), named threads,
and a `join_threads` that gives running requests `stop_grace` seconds and
then shuts their sockets so that every thread ends and is joined.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading

from fingerd.listen import peer_text
from fingerd.slots import Slots

log = logging.getLogger("fingerd")


class BoundedThreadsMixIn:
    """Mix in before a `socketserver` server class."""

    max_connections = 64
    stop_grace = 2.0
    name = "conn"

    def init_threads(self) -> None:
        self.slots = Slots(self.max_connections)
        self._numbers = itertools.count(1)
        self._active: dict[threading.Thread, socket.socket] = {}
        self._active_lock = threading.Lock()

    def process_request(self, request: socket.socket, client_address: object) -> None:
        if not self.slots.take():
            self.turn_away(request, client_address)
            return
        thread = threading.Thread(target=self._run, args=(request, client_address), daemon=True)
        thread.name = f"{self.name}-{next(self._numbers)}"
        with self._active_lock:
            self._active[thread] = request
        thread.start()

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
        """Past the limit: close at once (override to say why first)."""
        log.info("%s - busy", peer_text(client_address))
        self.shutdown_request(request)  # type: ignore[attr-defined]

    def join_threads(self) -> None:
        with self._active_lock:
            threads = list(self._active)
        for thread in threads:
            thread.join(self.stop_grace)
        with self._active_lock:
            stragglers = list(self._active.items())
        for thread, request in stragglers:
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            thread.join()
