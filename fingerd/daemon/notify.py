"""The readiness protocol of systemd and ``start-stop-daemon --notify-await``.

A state such as ``READY=1`` is one datagram to the ``AF_UNIX`` address in
``NOTIFY_SOCKET`` (a leading ``@`` names the abstract namespace).  Without
the variable every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("fingerd")


class Notifier:
    """Tells the service manager about readiness, reloads and shutdown."""

    def __init__(self, address: str | None = None) -> None:
        if address is None:
            address = os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address

    def send(self, *states: str) -> None:
        """Send ``KEY=value`` states; failures are logged, never raised."""
        if not self.address:
            return
        message = "\n".join(states).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as error:
            log.warning("cannot notify the service manager: %s", error)
