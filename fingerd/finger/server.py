"""The finger service (RFC 1288, port 79) on `socketserver`.

::

    finger-acceptor thread                 finger-waiting-room thread
    serve_forever(): accept()              selector over parked sockets
      process_request(): recv, no wait       |
        query complete? --yes--> respond     +-- readable: read more --> respond
        |                        send, no wait   writable: send the rest
        +--no--> park -------------------->      peer closed: close
                                                 deadline: time-out reply, close

The accepting thread never blocks on a client.  A client that has already
sent its line (nearly all of them) is answered on the spot from the user
table: one ``accept``, ``recv``, ``send`` and ``close``, no thread started
and no hand-off.  A query that needs a source that may block (``~/.plan``,
a command, a URL) goes to the ``finger-lookup-N`` workers, which answer it
and hand the connection back for sending; so does a forwarded query
(``name@host``) that will make a hop.  A client that is slow to ask, slow to read, or keeps
sending is parked in the `WaitingRoom`, which finishes it without holding a
thread.  So idle clients cannot starve the service, and the only limit on
them is `--max-connections`, past which a client gets `BUSY` and is closed.

Replies are built by the pure functions of `fingerd.finger.answer`.  Those
answered from memory are cached per table generation, so a large user list
costs its formatting once per reload rather than once per query.

Tunables are class attributes, as in `socketserver`.
"""

from __future__ import annotations

import errno
import functools
import logging
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fingerd.daemon.access_log import AccessLog
from fingerd.finger.answer import BUSY, TIMED_OUT, Policy, answer, answer_now
from fingerd.finger.connection import LOGGED_BYTES, Connection, Progress, access_line
from fingerd.finger.forward import Forwarder
from fingerd.finger.waiting_room import WaitingRoom
from fingerd.listen import EarlyBindMixIn, ListenAddress, ListenerMixin, peer_text
from fingerd.render import reply_bytes
from fingerd.slots import Slots
from fingerd.sources.directory import Directory
from fingerd.workers import WorkerPool

log = logging.getLogger("fingerd.finger")

Step = Callable[[Connection], None]
BUSY_REPLY = reply_bytes([BUSY])
TIMED_OUT_REPLY = reply_bytes([TIMED_OUT])


@dataclass(frozen=True)
class FingerSettings:
    """The operator's limits and choices for the finger service."""

    timeout: float = 10.0
    max_connections: int = 512
    policy: Policy = field(default_factory=Policy)


class _ReplyCache:
    """Encoded replies for one table generation."""

    __slots__ = ("generation", "replies")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.replies: dict[bytes, tuple[bytes, str]] = {}


class FingerServer(EarlyBindMixIn, ListenerMixin, socketserver.TCPServer):
    """Answers finger queries from a `UserTable`; `start()` and `stop()` it."""

    allow_reuse_address = True
    request_queue_size = 1024
    poll_interval = 0.2
    linger_seconds = 2.0
    cache_entries = 4096
    accept_error_pause = 0.05
    accept_batch = 64
    lookup_workers = 8

    name = "finger"

    def __init__(
        self, address: ListenAddress, directory: Directory, settings: FingerSettings, access: AccessLog
    ) -> None:
        self.listen_address = address
        self.access = access
        self.address_family = address.family
        self.directory = directory
        self.settings = settings
        self.slots = Slots(settings.max_connections)
        self.waiting_room = WaitingRoom()
        self.lookups = WorkerPool("finger-lookup", self.lookup_workers)
        self.forwarder = Forwarder(settings.timeout)
        self._cache = _ReplyCache(-1)
        self._thread = threading.Thread(target=self._serve, name="finger-acceptor", daemon=True)
        super().__init__((address.host, address.port), None, bind_and_activate=False)  # type: ignore[arg-type]

    # -- lifecycle -----------------------------------------------------

    def start(self) -> None:
        """Start listening and answering."""
        self.server_activate()
        self.waiting_room.start()
        self.lookups.start()
        self._thread.start()

    def alive(self) -> bool:
        """False if a thread of this service has died: the daemon should exit."""
        return self._thread.is_alive() and self.waiting_room.alive() and self.lookups.alive()

    def stop(self, deadline: float) -> None:
        """Stop accepting, finish in-flight replies until ``deadline``, join every thread."""
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join()
        self.server_close()
        self.lookups.stop(deadline)
        self.waiting_room.stop(max(0.0, deadline - time.monotonic()))

    def _serve(self) -> None:
        self.serve_forever(self.poll_interval)

    # -- socketserver extension points ---------------------------------

    def server_activate(self) -> None:
        super().server_activate()
        self.socket.setblocking(False)

    def service_actions(self) -> None:
        """Accept the rest of the backlog before the next ``select``.

        ``serve_forever`` accepts one client per wake-up; under load that is
        a ``select`` call per client.  Draining what is already queued costs
        one failed ``accept`` per batch instead.
        """
        for _ in range(self.accept_batch):
            try:
                request, client_address = self.get_request()
            except OSError:
                return
            try:
                self.process_request(request, client_address)
            except Exception:
                log.exception("error with a connection from %s", peer_text(client_address))
                self.shutdown_request(request)

    def get_request(self) -> tuple[socket.socket, tuple]:
        try:
            return super().get_request()
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.error("cannot accept a connection: %s", error.strerror)
                time.sleep(self.accept_error_pause)
            raise

    def process_request(self, request: socket.socket, client_address: tuple) -> None:  # type: ignore[override]
        request.setblocking(False)
        conn = Connection(request, client_address, time.monotonic())
        if not self.slots.take():
            self._turn_away(conn)
            return
        self._guarded(self._on_readable, conn)

    def _guarded(self, step: Step, conn: Connection) -> None:
        """Run one step of an exchange; on a bug, log it and close only this connection."""
        try:
            step(conn)
        except Exception:
            log.exception("error answering %s", conn.peer)
            self._close(conn)

    def handle_error(self, request: object, client_address: tuple) -> None:
        log.exception("error with a connection from %s", peer_text(client_address))

    # -- one exchange, step by step ------------------------------------

    def _on_readable(self, conn: Connection) -> None:
        progress = conn.read()
        if progress is Progress.COMPLETE:
            self._respond(conn)
        elif progress is Progress.GONE:
            self._close(conn)
        else:
            deadline = conn.accepted + self.settings.timeout
            self._park(conn, selectors.EVENT_READ, deadline, self._on_readable, self._on_read_timeout)

    def _respond(self, conn: Connection) -> None:
        reply = self._reply_now(conn)
        if reply is None:
            self.lookups.submit(
                functools.partial(self._guarded, self._respond_later, conn),
                functools.partial(self._guarded, self._turn_away_late, conn),
            )
            return
        self._send_reply(conn, *reply)

    def _respond_later(self, conn: Connection) -> None:
        """In a lookup worker: ask the sources that may block, or make a forwarding hop, then send."""
        deadline = conn.accepted + self.settings.timeout
        if time.monotonic() > deadline:
            self._turn_away_late(conn)
            return
        result = answer(conn.query(), self.directory, self.settings.policy, self.forwarder.relay, deadline)
        self._send_reply(conn, reply_bytes(result.lines), result.outcome)

    def _send_reply(self, conn: Connection, reply: bytes, outcome: str) -> None:
        self._log(conn, outcome)
        conn.owe(reply)
        conn.deadline = time.monotonic() + self.settings.timeout
        self._on_writable(conn)

    def _on_writable(self, conn: Connection) -> None:
        if not conn.write():
            self._park(conn, selectors.EVENT_WRITE, conn.deadline, self._on_writable, self._close)
            return
        if not conn.has_unread_input():
            self._close(conn)
            return
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.deadline = time.monotonic() + min(self.linger_seconds, self.settings.timeout)
        self._park(conn, selectors.EVENT_READ, conn.deadline, self._on_lingering, self._close)

    def _on_lingering(self, conn: Connection) -> None:
        if conn.discard_input():
            self._close(conn)
        else:
            self._park(conn, selectors.EVENT_READ, conn.deadline, self._on_lingering, self._close)

    def _on_read_timeout(self, conn: Connection) -> None:
        self._log(conn, "timeout")
        conn.owe(TIMED_OUT_REPLY)
        conn.write()
        self._close(conn)

    def _log(self, conn: Connection, outcome: str) -> None:
        """Record the access by host and the start of the query: what repeats, so the log can cache its lines."""
        received = conn.received
        self.access.record(access_line, conn.address[0], received[:LOGGED_BYTES], len(received), outcome)

    def _park(self, conn: Connection, events: int, deadline: float, on_ready: Step, on_expired: Step) -> None:
        self.waiting_room.park(
            conn.sock,
            events,
            deadline,
            functools.partial(self._guarded, on_ready, conn),
            functools.partial(self._guarded, on_expired, conn),
        )

    def _close(self, conn: Connection) -> None:
        conn.close()
        self.slots.give_back()

    def _turn_away_late(self, conn: Connection) -> None:
        """A query that waited for a lookup worker past `--timeout`, or met a stopping daemon."""
        self._send_reply(conn, BUSY_REPLY, "busy")

    def _turn_away(self, conn: Connection) -> None:
        """Past `--max-connections`: a short reply, never a wait."""
        conn.discard_input()
        conn.owe(BUSY_REPLY)
        conn.write()
        conn.close()
        self.access.record(access_line, conn.address[0], None, 0, "busy")

    # -- replies -------------------------------------------------------

    def _reply_now(self, conn: Connection) -> tuple[bytes, str] | None:
        """The encoded reply if it can be had from memory, else None.

        Replies are cached by the query line exactly as sent, so a repeated
        query costs a dictionary lookup, not even a parse.
        """
        generation = self.directory.generation()
        cache = self._cache
        if cache.generation != generation or len(cache.replies) >= self.cache_entries:
            cache = self._cache = _ReplyCache(generation)
        line = conn.line()
        cached = cache.replies.get(line)
        if cached is None:
            result = answer_now(conn.query(), self.directory, self.settings.policy)
            if result is None:
                return None
            cached = (reply_bytes(result.lines), result.outcome)
            if line is not None:
                cache.replies[line] = cached
        return cached
