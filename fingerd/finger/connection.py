"""One finger client's socket, what it has sent and what it is owed.

Every method is non-blocking and returns what happened; the server decides
what to do next.  Errors from the peer (a reset, a broken pipe) end the
connection quietly: there is nobody left to answer.
"""

from __future__ import annotations

import socket
from enum import Enum

from fingerd.listen import peer_text
from fingerd.protocol import Kind, Query, first_line, line_is_too_long, parse_query, split_line
from fingerd.render import visible_bytes

RECV_SIZE = 4096
HOLD_TAIL = getattr(socket, "MSG_MORE", 0)
"""Send flag: more is coming (here: the FIN), so do not push a short segment yet."""
LOGGED_QUERY_CHARS = 120
LOGGED_BYTES = LOGGED_QUERY_CHARS * 4
"""How much of what a client sent the access log looks at."""
_PLAIN = bytes(range(0x20, 0x7F)).replace(b'"', b"").replace(b"\\", b"")
"""Bytes a logged query may hold as they are; anything else is escaped."""


class Progress(Enum):
    """Where reading a query stands."""

    WAITING = "waiting"
    COMPLETE = "complete"
    GONE = "gone"


class Connection:
    """A client socket in non-blocking mode, with its buffers."""

    __slots__ = ("sock", "address", "accepted", "received", "eof", "outgoing", "deadline")

    def __init__(self, sock: socket.socket, address: tuple, accepted: float) -> None:
        self.sock = sock
        self.address = address
        self.accepted = accepted
        self.received = b""
        self.eof = False
        self.outgoing = memoryview(b"")
        self.deadline = 0.0

    def read(self) -> Progress:
        """Take what has arrived; say whether the query line is complete."""
        try:
            chunk = self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return Progress.WAITING
        except OSError:
            return Progress.GONE
        if not chunk:
            self.eof = True
            return Progress.COMPLETE
        self.received += chunk
        if b"\n" in chunk or line_is_too_long(self.received):
            return Progress.COMPLETE
        return Progress.WAITING

    @property
    def peer(self) -> str:
        return peer_text(self.address)

    def line(self) -> bytes | None:
        """The first line as sent, the key replies are cached by; None when it is too long."""
        return first_line(self.received)

    def query(self) -> Query:
        """The query the client sent (only the first line counts)."""
        line = self.line()
        return Query(Kind.TOO_LONG) if line is None else parse_query(line)

    def has_unread_input(self) -> bool:
        """True if the client sent more than its query and may send still more.

        Closing a socket with unread input makes the kernel send a reset,
        which can destroy the reply before the client reads it; such
        connections linger until the client stops sending.
        """
        if self.eof:
            return False
        end = self.received.find(b"\n")
        return end < 0 or end + 1 < len(self.received)

    def owe(self, reply: bytes) -> None:
        """Queue ``reply`` to be sent by `write`."""
        self.outgoing = memoryview(reply)

    def write(self) -> bool:
        """Send what is owed; True when all is sent or the peer is gone.

        Sent with ``MSG_MORE``: the tail of the reply is held back until the
        server closes or shuts down its side, which it does as soon as the
        reply is out, so Linux sends the tail and the FIN in one segment.
        That is one packet, and one wake-up of the client, fewer per query.
        """
        try:
            sent = self.sock.send(self.outgoing, HOLD_TAIL)
        except BlockingIOError:
            return False
        except OSError:
            self.outgoing = memoryview(b"")
            return True
        self.outgoing = self.outgoing[sent:]
        return not self.outgoing

    def discard_input(self) -> bool:
        """Read and drop input; True once the client has closed or failed."""
        try:
            for _ in range(16):
                if not self.sock.recv(65536):
                    return True
        except BlockingIOError:
            return False
        except OSError:
            return True
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


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
    of the query, so that lines repeat and the access log can cache them.
    IPv4-mapped IPv6 is shown as IPv4.
    """
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    if head is None:
        return f"{host} - {outcome}"
    return f'{host} "{logged_query(head, size)}" {outcome}'
