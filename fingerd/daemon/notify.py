"""The readiness protocol of systemd and ``start-stop-daemon --notify-await``.

A state such as ``READY=1`` is one datagram to the ``AF_UNIX`` address in
``NOTIFY_SOCKET`` (a leading ``@`` names the abstract namespace).  Without
the variable every call does nothing.

`connect` is called while the daemon is still root.  ``start-stop-daemon``
puts its socket in a directory only root may enter (unless it changed the
user itself, which fingerd cannot let it do: the daemon must bind port 79
first), so a daemon that dropped to ``nobody`` could no longer reach it by
name.  A connected datagram socket keeps working after the drop: the kernel
checks the path's permissions at ``connect`` only.

A start-up failure is reported as ``ERRNO=<n>``: ``start-stop-daemon`` then
fails at once instead of waiting for its timeout, and systemd records it.
``start-stop-daemon`` stops listening once it has seen ``READY=1``, so a
later notification that cannot be delivered is only logged at debug level.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("fingerd")


class Notifier:
    """Tells the service manager about readiness, reloads, failures and shutdown."""

    def __init__(self, address: str | None = None) -> None:
        if address is None:
            address = os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address
        self._socket: socket.socket | None = None
        self._ready_sent = False

    def connect(self) -> None:
        """Open the channel now, while the socket's path is still reachable (as root)."""
        if not self.address or self._socket is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(self.address)
        except OSError as error:
            sock.close()
            log.warning("cannot reach the service manager at %s: %s", os.environ.get("NOTIFY_SOCKET"), error)
            return
        self._socket = sock

    def send(self, *states: str) -> None:
        """Send ``KEY=value`` states; failures are logged, never raised."""
        if not self.address:
            return
        message = "\n".join(states).encode("utf-8")
        try:
            self._deliver(message)
        except OSError as error:
            level = logging.DEBUG if self._ready_sent else logging.WARNING
            log.log(level, "cannot notify the service manager: %s", error)
            return
        if "READY=1" in states:
            self._ready_sent = True

    def failed(self, error_number: int) -> None:
        """Report a start-up failure, so whoever waits for READY=1 stops waiting."""
        self.send(f"ERRNO={error_number}")

    def _deliver(self, message: bytes) -> None:
        if self._socket is not None:
            self._socket.send(message)
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, self.address)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
