"""The Twisted tutorial's setter: name on line 1, status on line 2, over TCP.

It listens on 127.0.0.1 only, whatever ``--bind`` says, and it is off by
default, because it cannot tell local users apart: anyone who can connect
to it can set anyone's status.  The Unix socket (`fingerd.setter.unix`) is
the safe way; this exists for the tutorial's clients.
"""

from __future__ import annotations

import socket
import socketserver

from fingerd.listen import ListenAddress, ListenerMixin, peer_text
from fingerd.setter.base import SetterMixIn
from fingerd.setter.protocol import parse_tcp_request, tcp_request_complete
from fingerd.users.writer import StatusFileWriter

LOOPBACK = "127.0.0.1"


class TcpSetterServer(SetterMixIn, ListenerMixin, socketserver.TCPServer):
    """Accepts ``name\\nstatus\\n`` from anyone who can reach 127.0.0.1."""

    name = "tcp-setter"
    allow_reuse_address = True
    line_end = b"\r\n"

    def __init__(self, port: int, writer: StatusFileWriter, timeout: float, max_per_address: int = 32) -> None:
        self.listen_address = ListenAddress(socket.AF_INET, LOOPBACK, port)
        self.address_family = socket.AF_INET
        self.max_per_address = max_per_address
        self.init_setter(writer, timeout)
        super().__init__((LOOPBACK, port), None, bind_and_activate=False)  # type: ignore[arg-type]

    def answer(self, request: socket.socket, client_address: object) -> str:
        update = parse_tcp_request(self.read_request(request, tcp_request_complete))
        reply = self.apply(update, peer_text(client_address))
        return "OK" if reply.startswith("OK") else reply
