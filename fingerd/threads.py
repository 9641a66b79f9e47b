"""A thread per connection, bounded, reaped and joined: a `socketserver` mixin.

Every network service of the daemon is a `socketserver` server with this
mixin: the accepting thread takes a connection and starts a named thread
for it, and that thread runs plain blocking code with a deadline.  What the
standard `ThreadingMixIn` lacks for a daemon on the open internet is added
here:

* a limit (`max_connections`, a `threading.BoundedSemaphore` taken without
  waiting); past it `busy_reply` is sent at once and the connection closed,
  instead of queueing;
* a lifetime: a connection still open `lifetime` seconds after it was
  accepted is shut down by the accepting thread (checked every
  `poll_interval` in `service_actions`), a safety net under each handler's
  own deadlines;
* named threads, and a stop in three steps that the application takes for
  every service at once: `stop_accepting`; at the cut-off, shortly before
  the deadline, `cut` (the read side of every connection is shut, so a
  thread still waiting for its client wakes, answers and ends); and
  `stop(deadline)`, which joins the threads, shuts what is left, and joins
  again (`join_all`);
* `bind()` before the privilege drop and `start()` (listen, serve) after.

A server may answer some requests on the accepting thread itself (the
finger service does, for a query already in hand that memory answers) and
call `start_thread` only for the rest; the request it passes on may then
be an object carrying its socket (`socket_of`), as `UDPServer`'s requests
carry theirs.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from fingerd.listen import EarlyBindMixIn, peer_text

log = logging.getLogger("fingerd")

DONT_WAIT = getattr(socket, "MSG_DONTWAIT", 0)
"""Send and receive flag: this one call does not block, whatever the socket's mode."""
REPLY_RESERVE = 0.5
"""Seconds before the stop deadline at which work still waiting is cut, so its client can still be answered."""


def join_all(threads: Iterable[threading.Thread], deadline: float) -> list[threading.Thread]:
    """Join ``threads`` until ``deadline`` (a `time.monotonic` value); return those still running."""
    stuck = []
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            stuck.append(thread)
    return stuck


@dataclass
class _Active:
    sock: socket.socket
    expires: float


class BoundedThreadsMixIn(EarlyBindMixIn):
    """Mix in before a `socketserver` server class; call `init_threads` first in ``__init__``."""

    max_connections = 64
    poll_interval = 0.1
    lifetime = 20.0
    busy_reply: bytes | None = None
    name = "conn"
    last_join = 1.0
    """Seconds to wait, past the stop deadline, for threads whose sockets were just shut."""

    def init_threads(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.slots = threading.BoundedSemaphore(self.max_connections)
        self._numbers = itertools.count(1)
        self._active: dict[threading.Thread, _Active] = {}
        self._active_lock = threading.Lock()
        self._next_reap = 0.0
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

    def stop_accepting(self) -> None:
        """Accept no new connection; the ones in progress go on."""
        if self._acceptor.is_alive():
            self.shutdown()  # type: ignore[attr-defined]
            self._acceptor.join()
        self.server_close()  # type: ignore[attr-defined]

    def cut(self) -> None:
        """Wake every thread still waiting for its client's input: it reads the end of input, answers and ends."""
        self.shut(self.threads(), socket.SHUT_RD)

    def stop(self, deadline: float) -> None:
        """Stop accepting; let requests run until ``deadline``; then end and join them."""
        self.stop_accepting()
        join_all(self.threads(), deadline)
        self.shut(self.threads())
        stuck = join_all(self.threads(), max(deadline, time.monotonic()) + self.last_join)
        if stuck:
            log.warning("%s: still running at shutdown: %s", self.name, ", ".join(thread.name for thread in stuck))

    def threads(self) -> list[threading.Thread]:
        """The connection threads running now."""
        with self._active_lock:
            return list(self._active)

    # -- one connection, in its own thread -----------------------------

    def process_request(self, request: object, client_address: object) -> None:
        if not self.slots.acquire(blocking=False):
            self.turn_away(request, client_address)
            return
        self.start_thread(request, client_address)

    def start_thread(self, request: object, client_address: object) -> None:
        """Serve ``request`` in a thread of its own; the caller has taken a slot for it."""
        thread = threading.Thread(target=self._run, args=(request, client_address), daemon=True)
        thread.name = f"{self.name}-{next(self._numbers)}"
        with self._active_lock:
            self._active[thread] = _Active(self.socket_of(request), time.monotonic() + self.lifetime)
        try:
            thread.start()
        except RuntimeError:
            log.error("%s: cannot start a thread for %s", self.name, peer_text(client_address))
            with self._active_lock:
                self._active.pop(thread, None)
            self.slots.release()
            self.shutdown_request(request)  # type: ignore[attr-defined]

    def socket_of(self, request: object) -> socket.socket:
        """The connected socket of ``request`` (override when requests carry more than their socket)."""
        return request  # type: ignore[return-value]

    def track(self, sock: socket.socket) -> None:
        """Call from a connection's thread when its socket object changes (TLS)."""
        with self._active_lock:
            active = self._active.get(threading.current_thread())
            if active is not None:
                active.sock = sock

    def _run(self, request: object, client_address: object) -> None:
        try:
            self.handle_connection(request, client_address)
        except Exception:
            log.exception("error answering %s", peer_text(client_address))
        finally:
            with self._active_lock:
                self._active.pop(threading.current_thread(), None)
            self.slots.release()

    def handle_connection(self, request: object, client_address: object) -> None:
        """Serve one connection in its own thread, then close it."""
        try:
            self.finish_request(request, client_address)  # type: ignore[attr-defined]
        finally:
            self.shutdown_request(request)  # type: ignore[attr-defined]

    def turn_away(self, request: object, client_address: object) -> None:
        """Past the limit: `busy_reply` without waiting, then close.

        What the client already sent is read first: closing a socket with
        unread input makes the kernel answer with a reset, which can
        destroy the reply before the client reads it.
        """
        self.log_busy(client_address)
        sock = self.socket_of(request)
        try:
            sock.recv(4096, DONT_WAIT)
        except OSError:
            pass
        try:
            if self.busy_reply:
                sock.send(self.busy_reply, DONT_WAIT)
        except OSError:
            pass
        self.shutdown_request(request)  # type: ignore[attr-defined]

    def handle_error(self, request: object, client_address: object) -> None:
        """A bug met while accepting: log it with its traceback (`socketserver` would print it to stderr)."""
        log.exception("error with a connection from %s", peer_text(client_address))

    def log_busy(self, client_address: object) -> None:
        log.info("%s - busy", peer_text(client_address))

    # -- the reaper ----------------------------------------------------

    def service_actions(self) -> None:
        """Shut down connections that outlived `lifetime` (runs in the acceptor, at most every `poll_interval`)."""
        now = time.monotonic()
        if now < self._next_reap:
            return
        self._next_reap = now + self.poll_interval
        with self._active_lock:
            expired = [thread for thread, active in self._active.items() if active.expires <= now]
        self.shut(expired)

    def shut(self, threads: list[threading.Thread], how: int = socket.SHUT_RDWR) -> None:
        """Shut down the sockets of these connection threads: a thread blocked on one wakes."""
        with self._active_lock:
            sockets = [self._active[thread].sock for thread in threads if thread in self._active]
        for sock in sockets:
            try:
                # The plain socket's shutdown, even for TLS: `SSLSocket.shutdown` would also
                # drop the TLS state, and a reply still being written would go out in clear.
                socket.socket.shutdown(sock, how)
            except OSError:
                pass
