"""What the Unix-socket and TCP setters share: lifecycle, reading, applying.

A setter connection is short and rare, so each gets its own thread
(`BoundedThreadsMixIn`); reading stops at the size cap, at the client's
half-close, or at `--timeout`.  Every request ends in one reply line.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from fingerd.setter.protocol import MAX_REQUEST_BYTES, SetRequest
from fingerd.threads import BoundedThreadsMixIn
from fingerd.users.writer import StatusFileWriter

log = logging.getLogger("fingerd.setter")


class SetterMixIn(BoundedThreadsMixIn):
    """Lifecycle and the write path of a setter server."""

    max_connections = 64
    request_queue_size = 128
    poll_interval = 0.2
    timeout = 10.0
    writer: StatusFileWriter

    def init_setter(self, writer: StatusFileWriter, timeout: float) -> None:
        self.writer = writer
        self.timeout = timeout
        self.init_threads()
        self._thread = threading.Thread(
            target=self.serve_forever, args=(self.poll_interval,), name=f"{self.name}-acceptor", daemon=True
        )

    def bind(self) -> None:
        try:
            self.server_bind()  # type: ignore[attr-defined]
        except OSError:
            self.server_close()  # type: ignore[attr-defined]
            raise

    def start(self) -> None:
        self.server_activate()  # type: ignore[attr-defined]
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.shutdown()  # type: ignore[attr-defined]
            self._thread.join()
        self.server_close()  # type: ignore[attr-defined]
        self.join_threads()

    def turn_away(self, request: socket.socket, client_address: object) -> None:
        """Past the limit: say so in one line, without waiting."""
        request.setblocking(False)
        try:
            request.send(b"ERROR busy, try again\n")
        except OSError:
            pass
        self.shutdown_request(request)  # type: ignore[attr-defined]

    def read_request(self, sock: socket.socket, complete: Callable[[bytes], bool]) -> bytes:
        """Read until EOF, until ``complete(data)``, or past the size cap."""
        sock.settimeout(self.timeout)
        data = b""
        while len(data) <= MAX_REQUEST_BYTES and not complete(data):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

    def apply(self, request: SetRequest, who: str) -> str:
        """Write the request through to the status file; the reply line."""
        try:
            changed = self.writer.write(request.name, request.status)
        except OSError as error:
            log.error("setter: cannot update %s for %s: %s", self.writer.path, who, error.strerror or error)
            return f"ERROR cannot update the status file: {error.strerror or error}"
        action = "cleared" if request.status is None else "set"
        log.info("setter: %s %s status of %s%s", who, action, request.name, "" if changed else " (unchanged)")
        return f"OK {action} status of {request.name}"
