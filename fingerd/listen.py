"""Where the network services listen: `--bind` and a port, resolved once.

The default is every interface, IPv4 and IPv6 on one socket (``::`` with
``IPV6_V6ONLY`` off; IPv4 peers then appear as ``::ffff:a.b.c.d``).  A host
without IPv6 falls back to ``0.0.0.0``.  A named address listens on that
address only.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from fingerd.daemon.logs import PeerAddress


@dataclass(frozen=True)
class ListenAddress:
    """A resolved listening address."""

    family: int
    host: str
    port: int
    dual_stack: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if self.family == socket.AF_INET6 else self.host
        return f"{host}:{self.port}"


def _ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
    except OSError:
        return False
    return True


def resolve_listen_address(bind: str | None, port: int) -> ListenAddress:
    """Turn `--bind` and a port into an address; ValueError if it has none."""
    host = (bind or "").strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or host == "::":
        if _ipv6_available():
            return ListenAddress(socket.AF_INET6, "::", port, dual_stack=True)
        if host == "::":
            raise ValueError("IPv6 is not available on this host")
        return ListenAddress(socket.AF_INET, "0.0.0.0", port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ValueError(f"cannot resolve {host!r}: {error.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return ListenAddress(family, sockaddr[0], port)


class EarlyBindMixIn:
    """For `socketserver` servers built with ``bind_and_activate=False``.

    `bind` runs while the daemon is still root (port 79); listening waits
    for the service's own `start`, once everything is ready.
    """

    def bind(self) -> None:
        try:
            self.server_bind()  # type: ignore[attr-defined]
        except OSError:
            self.server_close()  # type: ignore[attr-defined]
            raise


class ListenerMixin:
    """For `socketserver.TCPServer` subclasses: bind to a `ListenAddress`.

    Set ``listen_address`` before the server's ``__init__`` runs; it picks
    the address family, and `server_bind` sets dual-stack as asked.
    """

    listen_address: ListenAddress
    socket: socket.socket

    def server_bind(self) -> None:
        if self.listen_address.family == socket.AF_INET6:
            v6only = 0 if self.listen_address.dual_stack else 1
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        super().server_bind()  # type: ignore[misc]

    def adopt(self, sock: socket.socket) -> None:
        """Serve on a listening socket handed over (systemd socket activation) instead of binding one."""
        self.socket.close()  # type: ignore[has-type]
        self.socket = sock
        self.address_family = sock.family
        self.server_address = sock.getsockname()
        host, port = self.server_address[:2]
        self.listen_address = ListenAddress(sock.family, host, port)

    def get_request(self) -> tuple[socket.socket, object]:
        """`socket.socket.accept`, less the two enum conversions it makes (2 µs of a 20 µs connection).

        The connection's family and type are the listener's, known already;
        ``_accept`` is the primitive `accept` itself calls.  The new socket
        blocks, as `accept` leaves it when no default timeout is set.
        """
        fd, address = self.socket._accept()
        return socket.socket(self.address_family, self.socket_type, 0, fd), address  # type: ignore[attr-defined]


def client_group(address: object) -> str:
    """The client a connection counts against in per-address limits.

    IPv4 peers (IPv4-mapped IPv6 included) by their address; IPv6 peers by
    their /64, since one host is handed a whole /64 and may use any address
    in it, except link-local ones, which share ``fe80::/64`` on every link
    and so count by their own address and scope.  Local (Unix-socket) peers
    are one group.  The address is the client's: the connection's peer, or
    the client a trusted proxy names for it (`fingerd.proxy`).
    """
    if not isinstance(address, tuple) or not address:
        return "local"
    host = str(address[0]).partition("%")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if ip.is_link_local:
            return str(address[0])
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def peer_text(address: object) -> str:
    """A peer address for logs, with IPv4-mapped IPv6 shown as plain IPv4.

    It is a `PeerAddress`, so that ``--no-log-peers`` can blank it in every
    log line it is passed to as an argument.
    """
    if not isinstance(address, tuple) or not address:
        return "local"
    host = str(address[0])
    return PeerAddress(host[7:] if host.startswith("::ffff:") and "." in host else host)
