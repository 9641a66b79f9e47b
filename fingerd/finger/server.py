"""The finger service (RFC 1288, port 79): a threading `socketserver`.

::

    finger-acceptor thread                      finger-N thread, one per connection that needs one
    serve_forever(): accept()                   FingerHandler.handle(), top to bottom:
      process_request():                          read the query line       until the deadline
        slot free? --no--> "Server busy", close   look it up, or forward    sources block, bounded by it
        recv what has arrived (no wait)           sendall the reply         within --timeout
        whole line, answered from memory,         half-close, drain, close
        sent whole? --yes--> close, done
        |
        +--no--> start_thread(Exchange) ------>

The listening socket has ``TCP_DEFER_ACCEPT``: the kernel hands over a
connection once its query has arrived (or after `defer_seconds` of
silence).  So nearly every client is answered on the accepting thread from
memory, with one ``recv``, one ``send`` and a ``close``: no thread started,
nothing handed over.  Every other connection gets a thread of its own,
counted against `--max-connections`, and that thread is plain blocking
code: a query in pieces, a lookup in a source that may block (``~/.plan``,
a command, a URL), a forwarding hop, a long reply to a slow reader.
Reading the query and looking it up are bounded by the query's deadline,
`--timeout` after the client connected; sending the reply has `--timeout`
of its own.  A slow source holds only the threads of the queries that
asked it (`fingerd.sources`).

Behind a load balancer, a peer in `--proxy-from` starts every connection
with a PROXY header (`fingerd.proxy`) naming the client it speaks for.
The header is required from such a peer and believed from no other; it
is read before the query, on the accepting thread when it came whole
with the kernel's first wake-up, else by the connection's thread, which
then counts the connection against that client (`count_client`).  The
client's address is logged and limited; the reply does not depend on it.

A connection closed before its first byte (a port scan, a health check)
is logged as ``no-query``; an empty line is still the user list.

Replies are built by the pure functions of `fingerd.finger.answer`.  Those
answered from memory are cached, per table generation, by the bytes the
first ``recv`` gave when they are exactly one whole line, so a repeated
query costs one dictionary lookup: no parse, no per-connection object.
The path is kept lean because it runs for nearly every client: what it
spends, measured per connection against a plain Python loop and a C
server, is in README.md, *Benchmarks*.

On stop: accept nothing new; let every connection go on until shortly
before the deadline (`fingerd.threads.REPLY_RESERVE`); then, in `cut`, end forwarding hops
and the reads of clients still silent, which are told ``Timed out waiting
for the query``; the sources fail their own waiting lookups at the same
moment, and those are told ``Lookup failed``.  Every query is logged.

Tunables are class attributes, as in `socketserver`.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field

from fingerd.daemon.access_log import AccessLog
from fingerd.finger.answer import BUSY, TIMED_OUT, Policy, answer, answer_now
from fingerd.finger.forward import Forwarder
from fingerd.listen import ListenAddress, ListenerMixin, peer_text
from fingerd.protocol import Kind, Query, first_line, line_is_too_long, parse_query
from fingerd.proxy import ProxyHeaderError, TrustedProxies, parse_header
from fingerd.render import reply_bytes
from fingerd.sources.directory import Directory
from fingerd.threads import DONT_WAIT, BoundedThreadsMixIn

log = logging.getLogger("fingerd.finger")

RECV_SIZE = 4096
HOLD_TAIL = getattr(socket, "MSG_MORE", 0)
"""Send flag: more is coming (here: the FIN), so do not push a short segment yet."""
SEND_NOW = DONT_WAIT | HOLD_TAIL
DEFER_ACCEPT = getattr(socket, "TCP_DEFER_ACCEPT", None)
BUSY_REPLY = reply_bytes([BUSY])
TIMED_OUT_REPLY = reply_bytes([TIMED_OUT])


@dataclass(frozen=True)
class FingerSettings:
    """The operator's limits and choices for the finger service."""

    timeout: float = 10.0
    max_connections: int = 512
    max_per_address: int = 32
    policy: Policy = field(default_factory=Policy)
    proxies: TrustedProxies = field(default_factory=TrustedProxies)


@dataclass
class Exchange:
    """One connection, as the accepting thread hands it to a thread of its own.

    ``accepted`` is when the client's deadline started; ``received`` is what
    it has sent so far and ``ended`` whether it has half-closed.  ``unsent``
    is the rest of a reply the accepting thread began to send (and logged).
    ``header_pending`` marks a connection from a trusted proxy whose PROXY
    header has not all arrived: ``received`` starts with it.
    """

    sock: socket.socket
    accepted: float
    received: bytes = b""
    ended: bool = False
    unsent: memoryview | bytes = b""
    header_pending: bool = False

    def take(self, chunk: bytes) -> None:
        if chunk:
            self.received += chunk
        else:
            self.ended = True

    def complete(self) -> bool:
        """True once the query line is whole, proven too long, or ended by the client's half-close."""
        return self.ended or b"\n" in self.received or line_is_too_long(self.received)

    def line(self) -> bytes | None:
        """The query line as sent, the key replies are cached by; None when it is too long."""
        return first_line(self.received)

    def has_unread_input(self) -> bool:
        """True if the client sent more than its query and may send still more.

        Closing a socket with unread input makes the kernel send a reset,
        which can destroy the reply before the client reads it; such a
        connection is drained before it is closed.
        """
        if self.ended:
            return False
        end = self.received.find(b"\n")
        return end < 0 or end + 1 < len(self.received)


def query_of(line: bytes | None) -> Query:
    """The query a line asks; None is a line already proven too long."""
    return Query(Kind.TOO_LONG) if line is None else parse_query(line)


class FingerHandler(socketserver.BaseRequestHandler):
    """One finger exchange, in the connection's own thread: read, look up, send, close."""

    request: Exchange
    server: FingerServer

    def setup(self) -> None:
        self.sock = self.request.sock
        self.deadline = self.request.accepted + self.server.settings.timeout

    def handle(self) -> None:
        exchange = self.request
        try:
            if exchange.unsent:
                self.send(exchange.unsent)
            elif exchange.header_pending and not self.read_proxy_header():
                pass
            elif not self.read_query():
                self.time_out()
            elif exchange.ended and not exchange.received:
                self.server.log_no_query(self.client_address)
            else:
                reply, outcome = self.server.reply(exchange.line(), self.deadline)
                self.server.log(self.client_address, exchange, outcome)
                self.send(reply)
            if exchange.has_unread_input():
                self.drain()
        except OSError as error:
            log.debug("%s: %s", peer_text(self.client_address), error)

    def finish(self) -> None:
        self.sock.close()

    def read_query(self) -> bool:
        """Read until the query line is complete; False when the deadline (or the daemon's stop) comes first."""
        exchange = self.request
        while not exchange.complete():
            if not self.receive():
                return False
        return True

    def receive(self) -> bool:
        """Read what the client sends next, within the deadline; False when it (or the daemon's stop) comes first.

        A reset before the client sent anything counts as its end of input:
        a connection closed with no byte sent, as health checks do.
        """
        exchange = self.request
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(RECV_SIZE)
        except TimeoutError:
            return False
        except ConnectionResetError:
            if exchange.received:
                raise
            chunk = b""
        if not chunk and self.server.closing.is_set():
            return False
        exchange.take(chunk)
        return True

    def read_proxy_header(self) -> bool:
        """From a trusted proxy: read its header and take the client it names as this connection's; False when done.

        Done means answered and logged: the header was bad or cut short,
        the connection ended or timed out before it, or the client named
        already holds `--max-per-address` connections.
        """
        exchange = self.request
        try:
            header = parse_header(exchange.received)
            while header is None and not exchange.ended:
                try:
                    received = self.receive()
                except ConnectionResetError:
                    raise ProxyHeaderError("the connection was reset inside the header") from None
                if not received:
                    self.time_out()
                    return False
                header = parse_header(exchange.received)
            if header is None and exchange.received:
                raise ProxyHeaderError("the connection ended inside the header")
        except ProxyHeaderError as error:
            self.server.refuse_header(self.client_address, error)
            return False
        if header is None:
            self.server.log_no_query(self.client_address)
            return False
        exchange.header_pending = False
        exchange.received = exchange.received[header.length :]
        self.client_address = header.source or self.client_address
        if not self.server.count_client(self.client_address):
            self.server.log_busy(self.client_address)
            self.send(BUSY_REPLY)
            return False
        return True

    def time_out(self) -> None:
        self.server.log(self.client_address, self.request, "timeout")
        self.send(TIMED_OUT_REPLY)

    def send(self, reply: memoryview | bytes) -> None:
        """The whole reply within `--timeout`; its tail rides with the FIN that closing sends."""
        self.sock.settimeout(self.server.settings.timeout)
        self.sock.sendall(reply, HOLD_TAIL)

    def drain(self) -> None:
        """Half-close, then read and drop what the client still sends, for a moment, before closing."""
        self.sock.shutdown(socket.SHUT_WR)
        end = time.monotonic() + min(self.server.linger_seconds, self.server.settings.timeout)
        while (remaining := end - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            if not self.sock.recv(65536):
                return


class _ReplyCache:
    """Encoded replies for one table generation: by the bytes received, and one reply per query.

    Queries that differ only in spacing, ``/W`` or CR LF share one reply
    object, so the bytes keys are all that many variants cost; and the
    replies kept add up to `FingerServer.cache_bytes` at most.  Without
    that, 3,000 variants of a user list of 20,000 users took a daemon to
    3.2 GB.
    """

    __slots__ = ("generation", "replies", "by_query", "size")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.replies: dict[bytes, tuple[bytes, str]] = {}
        self.by_query: dict[Query, tuple[bytes, str]] = {}
        self.size = 0


class FingerServer(BoundedThreadsMixIn, ListenerMixin, socketserver.TCPServer):
    """Answers finger queries from the directory; `start()` and `stop()` it."""

    allow_reuse_address = True
    request_queue_size = 1024
    accept_batch = 64
    defer_seconds = 1
    linger_seconds = 2.0
    cache_entries = 4096
    cache_bytes = 8 * 1024 * 1024
    name = "finger"
    busy_reply = BUSY_REPLY

    def __init__(
        self, address: ListenAddress, directory: Directory, settings: FingerSettings, access: AccessLog
    ) -> None:
        self.listen_address = address
        self.address_family = address.family
        self.directory = directory
        self.settings = settings
        self.access = access
        self.forwarder = Forwarder()
        self.closing = threading.Event()
        self._cache = _ReplyCache(-1)
        self.max_connections = settings.max_connections
        self.max_per_address = settings.max_per_address
        self.proxies = settings.proxies
        self.init_threads(lifetime=2 * settings.timeout + self.linger_seconds)
        super().__init__((address.host, address.port), FingerHandler, bind_and_activate=False)

    def cut(self) -> None:
        """At the stop's cut-off: end forwarding hops, and answer clients still silent that they timed out."""
        self.closing.set()
        self.forwarder.stop()
        super().cut()

    # -- socketserver extension points ---------------------------------

    def server_activate(self) -> None:
        if DEFER_ACCEPT is not None:
            self.socket.setsockopt(socket.IPPROTO_TCP, DEFER_ACCEPT, self.defer_seconds)
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
                break
            try:
                self.process_request(request, client_address)
            except Exception:
                log.exception("error with a connection from %s", peer_text(client_address))
                self.shutdown_request(request)
        super().service_actions()

    def process_request(self, request: socket.socket, client_address: tuple) -> None:  # type: ignore[override]
        """Answer at once what memory can answer; give everything else a thread.

        No slot is taken for an answer given here: only this thread takes
        slots, and one is free, so serving this client keeps the count
        within `--max-connections` as taking one would.
        """
        if not self.slots.free():
            self.turn_away(request, client_address)
            return
        try:
            received = request.recv(RECV_SIZE, DONT_WAIT)
        except BlockingIOError:
            received = None
        except ConnectionResetError:
            received = b""
        except OSError:
            request.close()
            return
        if received == b"":
            self.log_no_query(client_address)
            request.close()
        elif self.proxies.networks and self.proxies.trusts(client_address):
            self._process_proxied(request, received, client_address)
        else:
            self._process(request, received, client_address)

    def _process(self, request: socket.socket, received: bytes | None, client_address: tuple) -> None:
        try:
            exchange = self._answer_at_once(request, received, client_address)
        except BaseException:
            request.close()
            raise
        if exchange is None:
            request.close()
            return
        self._hand_over(exchange, client_address, counted=not exchange.unsent)

    def _process_proxied(self, request: socket.socket, received: bytes | None, proxy: tuple) -> None:
        """From a trusted proxy: the PROXY header first, then the query, answered for the client it names.

        A header not yet whole goes to a thread, which counts the
        connection once it knows the client (`FingerHandler.read_proxy_header`).
        """
        try:
            header = None if received is None else parse_header(received)
        except ProxyHeaderError as error:
            self.refuse_header(proxy, error)
            request.close()
            return
        if header is None:
            exchange = self._exchange(request, received)
            exchange.header_pending = True
            self._hand_over(exchange, proxy, counted=False)
            return
        client = header.source or proxy
        rest = received[header.length :]  # type: ignore[index]
        if rest:
            self._process(request, rest, client)
            return
        self._hand_over(Exchange(request, time.monotonic()), client, counted=True)

    def _hand_over(self, exchange: Exchange, client_address: tuple, counted: bool) -> None:
        taken = self.slots.acquire()
        assert taken, "only this thread takes slots, and one was free"
        self.start_thread(exchange, client_address, counted=counted)

    def socket_of(self, request: object) -> socket.socket:
        return request.sock if isinstance(request, Exchange) else request  # type: ignore[return-value]

    def shutdown_request(self, request: object) -> None:
        """Close: the handler has already half-closed where that was needed."""
        self.close_request(request)

    def close_request(self, request: object) -> None:
        self.socket_of(request).close()

    def turn_away(self, request: object, client_address: tuple) -> None:  # type: ignore[override]
        """Busy: from a trusted proxy, logged under the client its header names, when the header has arrived."""
        if self.proxies.trusts(client_address):
            try:
                header = parse_header(self.socket_of(request).recv(RECV_SIZE, DONT_WAIT | socket.MSG_PEEK))
            except (OSError, ProxyHeaderError):
                header = None
            if header is not None and header.source is not None:
                client_address = header.source
        super().turn_away(request, client_address)

    def log_busy(self, client_address: tuple) -> None:  # type: ignore[override]
        self.access.record(client_address[0], None, 0, "busy")

    def log_no_query(self, client_address: tuple) -> None:
        """A connection closed before its first byte (a port scan, a health check): not a list query."""
        self.access.record(client_address[0], None, 0, "no-query")

    def refuse_header(self, proxy: tuple, error: ProxyHeaderError) -> None:
        """A trusted proxy sent no valid PROXY header: the connection is closed unanswered, and logged."""
        self.access.record(proxy[0], None, 0, "bad-proxy-header")
        log.warning("%s: bad PROXY header: %s", peer_text(proxy), error)

    # -- replies -------------------------------------------------------

    def reply(self, line: bytes | None, deadline: float) -> tuple[bytes, str]:
        """The encoded reply to a query line and its outcome, asking sources that may block.

        Runs in a connection's own thread, so it leaves the reply cache to
        the accepting thread, the only one that reads or fills it.
        """
        result = answer(query_of(line), self.directory, self.settings.policy, self.forwarder.relay, deadline)
        return reply_bytes(result.lines), result.outcome

    def log(self, client_address: tuple, exchange: Exchange, outcome: str) -> None:
        """Record the access by host and the start of the query: what repeats, so the log can cache its lines."""
        self.access.record(client_address[0], exchange.received, len(exchange.received), outcome)

    def _answer_at_once(self, sock: socket.socket, received: bytes | None, client_address: tuple) -> Exchange | None:
        """On the accepting thread: None when memory had the reply and the socket took it all, else what a thread is to finish.

        ``received`` is what the first ``recv`` gave: None if nothing had
        arrived (the kernel's accept deferral ran out), b"" if the client
        half-closed at once.  A repeated query costs one dictionary lookup:
        replies are cached by those bytes, when they are exactly one whole
        line, so a hit needs no parse and no check.
        """
        cache = self._current_cache()
        cached = cache.replies.get(received)  # type: ignore[arg-type]
        if cached is None:
            exchange = self._exchange(sock, received)
            cached = self._reply_from_memory(exchange, cache)
            if cached is None:
                return exchange
        reply, outcome = cached
        self.access.record(client_address[0], received, len(received), outcome)  # type: ignore[arg-type]
        try:
            sent = sock.send(reply, SEND_NOW)
        except BlockingIOError:
            sent = 0
        except OSError:
            return None
        if sent == len(reply):
            return None
        return Exchange(sock, time.monotonic(), received, unsent=memoryview(reply)[sent:])  # type: ignore[arg-type]

    def _exchange(self, sock: socket.socket, received: bytes | None) -> Exchange:
        """The connection as a thread would take it over; its deadline starts when the client connected."""
        exchange = Exchange(sock, time.monotonic())
        if received is None:
            exchange.accepted -= self.defer_seconds if DEFER_ACCEPT is not None else 0
        else:
            exchange.take(received)
        return exchange

    def _current_cache(self) -> _ReplyCache:
        """The reply cache of the table's current generation (emptied when full)."""
        generation = self.directory.generation()
        cache = self._cache
        if cache.generation != generation or len(cache.replies) >= self.cache_entries:
            cache = self._cache = _ReplyCache(generation)
        return cache

    def _reply_from_memory(self, exchange: Exchange, cache: _ReplyCache) -> tuple[bytes, str] | None:
        """The encoded reply to a query that is one whole line with nothing after it, if memory has it; else None.

        It is kept for the next client that sends the same bytes, and for
        any that sends the same query (`_ReplyCache`), within `cache_bytes`.
        """
        if not exchange.complete() or exchange.has_unread_input():
            return None
        line = exchange.line()
        query = query_of(line)
        reply = cache.by_query.get(query)
        if reply is None:
            result = answer_now(query, self.directory, self.settings.policy)
            if result is None:
                return None
            reply = (reply_bytes(result.lines), result.outcome)
            if line is None or cache.size + len(reply[0]) > self.cache_bytes:
                return reply
            cache.by_query[query] = reply
            cache.size += len(reply[0])
        if line is not None:
            cache.replies[exchange.received] = reply
        return reply
