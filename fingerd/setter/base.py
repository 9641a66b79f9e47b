"""What the Unix-socket and TCP setters share: reading a request, applying it.

A setter connection is short and rare, so each gets its own thread
(`BoundedThreadsMixIn`: bounded, reaped after `--timeout`, joined on stop).
Reading stops when the request is complete, at the size cap, at the
client's end of input, or after `io_timeout`; only a complete request is
applied, and none once the daemon has begun to stop.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from fingerd.setter.protocol import MAX_REQUEST_BYTES, SetRequest, SetterError
from fingerd.threads import BoundedThreadsMixIn
from fingerd.users.writer import StatusFileWriter

log = logging.getLogger("fingerd.setter")


class SetterMixIn(BoundedThreadsMixIn):
    """The write path of a setter server."""

    max_connections = 64
    request_queue_size = 128
    busy_reply = b"ERROR busy, try again\n"
    line_end = b"\n"
    writer: StatusFileWriter
    io_timeout: float

    def init_setter(self, writer: StatusFileWriter, timeout: float) -> None:
        self.writer = writer
        self.io_timeout = timeout
        self._stopping = False
        self.init_threads(lifetime=timeout)

    def stop(self, deadline: float) -> None:
        self._stopping = True
        super().stop(deadline)

    def finish_request(self, request: socket.socket, client_address: object) -> None:
        """Answer one request with one line, whatever happens."""
        try:
            reply = self.answer(request, client_address)
        except SetterError as error:
            reply = f"ERROR {error}"
        except TimeoutError:
            reply = "ERROR timed out waiting for the request"
        try:
            request.sendall(reply.encode("utf-8") + self.line_end)
        except OSError:
            pass

    def answer(self, request: socket.socket, client_address: object) -> str:
        """Read, check and apply one request; the reply line (override)."""
        raise NotImplementedError

    def read_request(self, sock: socket.socket, complete: Callable[[bytes], bool]) -> bytes:
        """Read until ``complete(data)``, the size cap, or the client's end of input."""
        sock.settimeout(self.io_timeout)
        data = b""
        while len(data) <= MAX_REQUEST_BYTES and not complete(data):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

    def apply(self, request: SetRequest, who: str) -> str:
        """Write the request through to the status file; the reply line."""
        if self._stopping:
            return "ERROR the finger daemon is stopping; nothing was changed"
        try:
            changed = self.writer.write(request.name, request.status)
        except OSError as error:
            log.error("setter: cannot update %s for %s: %s", self.writer.path, who, error.strerror or error)
            return f"ERROR cannot update the status file: {error.strerror or error}"
        action = "cleared" if request.status is None else "set"
        log.info("setter: %s %s status of %s%s", who, action, request.name, "" if changed else " (unchanged)")
        return f"OK {action} status of {request.name}"
