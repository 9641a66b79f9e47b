"""The web view (HTTP, and the same over TLS): `socketserver` plus `http.server`.

::

    web-acceptor thread: accept() --> slot free, and fewer than --max-per-address
                                      from this client? --no--> "503 busy", close
                                         |                      (HTTPS: in a short
                                        yes                      https-busy thread,
                                         |                       after the handshake)
                                         +--> web-N thread: TLS handshake
                                              (if HTTPS), one request,
                                              close, give the slot back

A request is small, and answered from memory unless a source that may
block (``~/.plan``, a command, a URL) is configured, so a thread per
connection is the plain design: the threads are bounded by `max_connections`, every read
and write by `--timeout`, a whole connection by twice that, and requests are
HTTP/1.0 (one per connection), so a thread never waits on an idle
keep-alive.  The TLS handshake happens in
the connection's own thread, never in the accepting one, so a client that
stalls mid-handshake holds only its own slot.

From a peer in `--proxy-from`, the connection's thread first takes a
PROXY header off the socket if one starts it (before the TLS handshake,
as a balancer sends it), and the handler then follows ``X-Forwarded-For``
through trusted hops (`fingerd.proxy`); such a connection is counted
against the client found, not the proxy.  ``GET /healthz`` reports the
application's own check (`WebSettings.healthy`).

On stop the server stops accepting, lets running requests finish until the
stop deadline, then shuts their sockets so every thread ends, and joins them
all (`BoundedThreadsMixIn`, as every network service of the daemon).
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fingerd.listen import ListenAddress, ListenerMixin, peer_text
from fingerd.proxy import (
    V1_MAX_BYTES,
    V2_FIXED,
    V2_MAX_BODY,
    ProxyHeader,
    ProxyHeaderError,
    TrustedProxies,
    parse_header,
    starts_like_header,
)
from fingerd.sources.directory import Directory
from fingerd.threads import BoundedThreadsMixIn
from fingerd.web.api import make_dispatcher
from fingerd.web.handler import WebHandler, busy_response
from fingerd.web.pages import Templates

log = logging.getLogger("fingerd.web")

PEEK_BYTES = max(V1_MAX_BYTES, V2_FIXED.size + V2_MAX_BODY)
"""Enough to hold the longest PROXY header either version allows."""


def _always_healthy() -> bool:
    return True


@dataclass(frozen=True)
class WebSettings:
    """What the pages need to know about the host, the limits, the proxies, and the daemon's health."""

    host: str = "localhost"
    timeout: float = 10.0
    max_per_address: int = 32
    proxies: TrustedProxies = field(default_factory=TrustedProxies)
    healthy: Callable[[], bool] = _always_healthy
    """What ``GET /healthz`` reports: the application's own check, that every service is alive."""


class WebServer(BoundedThreadsMixIn, ListenerMixin, socketserver.TCPServer):
    """Serves the directory as HTML, JSON and XML-RPC; `start()` and `stop()` it."""

    allow_reuse_address = True
    request_queue_size = 128
    max_connections = 64
    busy_reply = busy_response()
    busy_threads = 8
    """Threads that may tell HTTPS clients past the limits that the server is busy, at once."""
    busy_timeout = 2.0

    def __init__(
        self,
        address: ListenAddress,
        directory: Directory,
        templates: Templates,
        settings: WebSettings,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.listen_address = address
        self.address_family = address.family
        self.directory = directory
        self.templates = templates
        self.settings = settings
        self.tls = tls
        self.rpc = make_dispatcher(directory)
        self.name = "https" if tls else "web"
        self._busy_slots = threading.BoundedSemaphore(self.busy_threads)
        self.max_per_address = settings.max_per_address
        self.proxies = settings.proxies
        self.init_threads(lifetime=2 * settings.timeout)
        super().__init__((address.host, address.port), WebHandler, bind_and_activate=False)

    def turn_away(self, request: object, client_address: object) -> None:
        """Over TLS the busy reply needs a handshake first: a short thread of its own does it, a few at most."""
        if self.tls is None:
            super().turn_away(request, client_address)
            return
        self.log_busy(client_address)
        if not self._busy_slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        self.start_short_thread(self._tell_busy, request, client_address, self.busy_timeout, self._busy_slots)

    def turn_away_now(self, request: object, client_address: object) -> None:
        """Out of descriptors, a TLS busy reply would hold the reserve descriptor for a handshake: just close."""
        if self.tls is None:
            super().turn_away_now(request, client_address)
            return
        self.log_busy(client_address)
        self.shutdown_request(request)

    def descriptors_needed(self) -> int:
        return self.max_connections + (self.busy_threads if self.tls is not None else 0)

    def _tell_busy(self, request: socket.socket, client_address: object) -> None:
        """Handshake, read the request, answer 503; the whole within `busy_timeout` (the reaper sees to it).

        A trusted proxy's PROXY header is taken off first: the handshake
        starts after it.
        """
        if self.proxies.trusts(client_address):
            try:
                read_proxy_header(request, time.monotonic() + self.busy_timeout)
            except (ProxyHeaderError, OSError) as error:
                log.debug("%s: %s", peer_text(client_address), error)
                self.shutdown_request(request)
                return
        self._converse(request, client_address, self.busy_timeout, self._send_busy)

    def _send_busy(self, connection: socket.socket) -> None:
        connection.recv(4096)
        connection.sendall(self.busy_reply or b"")

    def handle_connection(self, request: socket.socket, client_address: tuple) -> None:  # type: ignore[override]
        """One request; from a trusted proxy, its PROXY header first, and the connection counted against the client it names.

        ``X-Forwarded-For`` is followed afterwards (`WebHandler.admit_client`),
        except after a header that passes a connection on without naming
        its client (v1 ``UNKNOWN``, v2 ``UNSPEC``): what follows is the
        client's own text then, and its ``X-Forwarded-For`` its own claim.
        """
        client, follow_forwarded = client_address, True
        if self.proxies.trusts(client_address):
            try:
                header = read_proxy_header(request, time.monotonic() + self.settings.timeout)
            except ProxyHeaderError as error:
                log.warning("%s: %s: bad PROXY header: %s", self.name, peer_text(client_address), error)
                self.shutdown_request(request)
                return
            except OSError as error:
                log.debug("%s: %s", peer_text(client_address), error)
                self.shutdown_request(request)
                return
            if header is not None and not header.local:
                client = header.source or client_address
                follow_forwarded = header.source is not None
            if client is not client_address and not self.proxies.trusts(client) and not self.count_client(client):
                self.log_busy(client)
                self._converse(request, client, self.busy_timeout, self._send_busy)
                return

        def answer(connection: socket.socket) -> None:
            self.RequestHandlerClass(connection, client, self, follow_forwarded=follow_forwarded)  # type: ignore[call-arg]

        self._converse(request, client, self.settings.timeout, answer)

    def _converse(
        self, request: socket.socket, client_address: object, timeout: float, talk: Callable[[socket.socket], None]
    ) -> None:
        """Shake hands when over TLS (in this thread, tracked so a stop can cut it), ``talk``, then close."""
        connection: socket.socket = request
        try:
            request.settimeout(timeout)
            if self.tls is not None:
                connection = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
                self.track(connection)
                connection.do_handshake()
            talk(connection)
        except (OSError, ssl.SSLError) as error:
            log.debug("%s: %s", peer_text(client_address), error)
        finally:
            self.shutdown_request(connection)


def read_proxy_header(sock: socket.socket, deadline: float) -> ProxyHeader | None:
    """The PROXY header at the start of ``sock``, taken off the socket and not a byte more, by ``deadline``.

    None when the connection starts without one (plain HTTP, a TLS
    handshake: a proxy that sends ``X-Forwarded-For`` instead).  What
    follows the header must stay unread for `http.server` or the TLS
    layer, so the bytes are peeked at; ``SO_RCVLOWAT`` makes each peek
    wait for more than the last one saw, so the thread never spins.
    Raises TimeoutError at ``deadline``.
    """
    want = 1
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no whole PROXY header in time")
            sock.settimeout(remaining)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
            data = sock.recv(PEEK_BYTES, socket.MSG_PEEK)
            starts = starts_like_header(data)
            if starts is False:
                return None
            header = parse_header(data) if starts else None
            if header is not None:
                sock.recv(header.length, socket.MSG_WAITALL)
                return header
            if len(data) < want:
                if data:
                    raise ProxyHeaderError("the connection ended inside the header")
                return None
            want = len(data) + 1
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
