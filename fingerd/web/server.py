"""The web view (HTTP, and the same over TLS): `socketserver` plus `http.server`.

::

    web-acceptor thread: accept() --> slot free? --no--> "503 busy", close
                                         |
                                        yes --> web-N thread: TLS handshake
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

On stop the server stops accepting, lets running requests finish until the
stop deadline, then shuts their sockets so every thread ends, and joins them
all (`BoundedThreadsMixIn`, as every network service of the daemon).
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
from dataclasses import dataclass

from fingerd.listen import ListenAddress, ListenerMixin, peer_text
from fingerd.threads import BoundedThreadsMixIn
from fingerd.sources.directory import Directory
from fingerd.web.api import make_dispatcher
from fingerd.web.handler import WebHandler
from fingerd.web.pages import Templates

log = logging.getLogger("fingerd.web")

BUSY_RESPONSE = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 29\r\nConnection: close\r\n\r\nServer busy, try again later\n"
)


@dataclass(frozen=True)
class WebSettings:
    """What the pages need to know about the host and the limits."""

    host: str = "localhost"
    timeout: float = 10.0


class WebServer(BoundedThreadsMixIn, ListenerMixin, socketserver.TCPServer):
    """Serves the directory as HTML, JSON and XML-RPC; `start()` and `stop()` it."""

    allow_reuse_address = True
    request_queue_size = 128
    max_connections = 64
    busy_reply = BUSY_RESPONSE

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
        if tls is not None:
            self.busy_reply = None
        self.init_threads(lifetime=2 * settings.timeout)
        super().__init__((address.host, address.port), WebHandler, bind_and_activate=False)

    def handle_connection(self, request: socket.socket, client_address: tuple) -> None:  # type: ignore[override]
        connection: socket.socket = request
        try:
            request.settimeout(self.settings.timeout)
            if self.tls is not None:
                connection = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
                self.track(connection)
                connection.do_handshake()
            self.finish_request(connection, client_address)
        except (OSError, ssl.SSLError) as error:
            log.debug("%s: %s", peer_text(client_address), error)
        finally:
            self.shutdown_request(connection)
