"""Trusted proxies: who may name the real client, and how they name it.

A load balancer in front of the daemon (HAProxy, nginx ``stream``) makes
every connection come from the balancer's own address.  It can say whose
connection it is passing on, in one of two ways:

* the PROXY protocol (HAProxy's ``send-proxy``, ``send-proxy-v2``; nginx's
  ``proxy_protocol on``): a header before the first byte of the client's
  own data, in text (v1) or binary (v2);
* ``X-Forwarded-For``, for HTTP only: each proxy appends the address it
  received the request from.

Either is believed only from a peer in `--proxy-from` (`TrustedProxies`):
anyone can write a header.  The real client's address then counts for the
access log and for `--max-per-address`, and for nothing else.

Everything here is a pure function of bytes or text: `parse_header` reads
a header from what has been received so far, `forwarded_client` walks an
``X-Forwarded-For`` chain.  The services read from their sockets and call
them.  The two formats are those of HAProxy's ``proxy-protocol.txt``
(docs/behavior.md, "Behind a load balancer").
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Address = tuple[str, int]
"""A peer as sockets give it: host text and port."""
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

V1_PREFIX = b"PROXY "
V1_MAX_BYTES = 107
"""The longest v1 header, CR LF included (``PROXY UNKNOWN`` with two full IPv6 addresses)."""
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = struct.Struct("!12sBBH")
"""Signature, version and command, family and transport, length of what follows."""
V2_MAX_BODY = 2048
"""Longest v2 address block with its TLVs accepted; HAProxy's own headers are a few hundred bytes."""
V2_LOCAL, V2_PROXY = 0x0, 0x1
V2_INET4 = struct.Struct("!4s4sHH")
V2_INET6 = struct.Struct("!16s16sHH")
V2_UNIX_BYTES = 216
V2_FAMILIES = frozenset({0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32})
"""The address family and transport bytes v2 defines; a receiver must refuse any other."""
TLV_HEAD = struct.Struct("!BH")
V1_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")
HOP_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)
_V1_FAMILIES = {b"TCP4": socket.AF_INET, b"TCP6": socket.AF_INET6}
_FAMILY_NAMES = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}


class ProxyHeaderError(ValueError):
    """What was received is not a valid PROXY header (the message says why, for the log)."""


@dataclass(frozen=True)
class ProxyHeader:
    """A whole PROXY header.

    ``source`` is the client the proxy speaks for, or None when the proxy
    speaks for itself (v2 ``LOCAL``, as in health checks) or names no
    internet address (v1 ``UNKNOWN``, v2 ``UNSPEC`` or a Unix socket); the
    connection's own peer stands for the client then.  ``length`` is how
    many bytes the header took; the client's data follows.
    """

    version: int
    length: int
    source: Address | None = None
    destination: Address | None = None
    local: bool = False
    tlvs: tuple[tuple[int, bytes], ...] = ()


def starts_like_header(data: bytes) -> bool | None:
    """Whether ``data`` begins a PROXY header: True, False, or None when too few bytes have come to tell."""
    for prefix in (V1_PREFIX, V2_SIGNATURE):
        if data[: len(prefix)] == prefix[: len(data)]:
            return True if len(data) >= len(prefix) else None
    return False


def parse_header(data: bytes) -> ProxyHeader | None:
    """The PROXY header at the start of ``data``; None while it is incomplete.

    Raises `ProxyHeaderError` as soon as ``data`` cannot be the start of a
    valid header, so a peer that sends something else is refused without
    waiting for more.
    """
    kind = starts_like_header(data)
    if kind is False:
        raise ProxyHeaderError("no PROXY header")
    if kind is None:
        return None
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    return _parse_v2(data)


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX_BYTES)
    if end < 0:
        if len(data) >= V1_MAX_BYTES or b"\n" in data[:V1_MAX_BYTES]:
            raise ProxyHeaderError(f"v1 header without CR LF in its first {V1_MAX_BYTES} bytes")
        return None
    words = data[len(V1_PREFIX) : end].split(b" ")
    if words[0] == b"UNKNOWN":
        return ProxyHeader(1, end + 2)
    family = _V1_FAMILIES.get(words[0])
    if family is None:
        raise ProxyHeaderError(f"v1 protocol {_shown(words[0])} is not TCP4, TCP6 or UNKNOWN")
    if len(words) != 5:
        raise ProxyHeaderError("v1 header does not have source, destination and both ports")
    source = (_v1_address(words[1], family), _v1_port(words[3]))
    destination = (_v1_address(words[2], family), _v1_port(words[4]))
    return ProxyHeader(1, end + 2, source, destination)


def _v1_address(word: bytes, family: int) -> str:
    """The address in the form peers are compared and logged in; ``inet_pton`` is strict (no leading zeros, no scope)."""
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, word.decode("ascii")))
    except (UnicodeDecodeError, OSError):
        raise ProxyHeaderError(f"v1 address {_shown(word)} is not an {_FAMILY_NAMES[family]} address") from None


def _v1_port(word: bytes) -> int:
    if not V1_PORT.fullmatch(word) or int(word) > 65535:
        raise ProxyHeaderError(f"v1 port {_shown(word)} is not a number from 0 to 65535")
    return int(word)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < V2_FIXED.size:
        return None
    _, version_command, family, body_length = V2_FIXED.unpack_from(data)
    if version_command >> 4 != 2:
        raise ProxyHeaderError(f"v2 header of version {version_command >> 4}")
    command = version_command & 0x0F
    if command not in (V2_LOCAL, V2_PROXY):
        raise ProxyHeaderError(f"v2 command {command} is neither LOCAL nor PROXY")
    if body_length > V2_MAX_BODY:
        raise ProxyHeaderError(f"v2 header of {body_length} bytes, more than {V2_MAX_BODY}")
    length = V2_FIXED.size + body_length
    if len(data) < length:
        return None
    body = data[V2_FIXED.size : length]
    if command == V2_LOCAL:
        return ProxyHeader(2, length, local=True)
    source, destination, used = _v2_addresses(family, body)
    return ProxyHeader(2, length, source, destination, tlvs=_tlvs(body[used:]))


def _v2_addresses(family: int, body: bytes) -> tuple[Address | None, Address | None, int]:
    """The addresses of a v2 PROXY block and how many bytes they take; the rest are TLVs."""
    if family not in V2_FAMILIES:
        raise ProxyHeaderError(f"v2 family byte 0x{family:02x} is not defined")
    address_family = family >> 4
    if address_family == 0:
        return None, None, 0
    if address_family == 3:
        return None, None, _need(body, V2_UNIX_BYTES, "Unix")
    layout, kind = (V2_INET4, socket.AF_INET) if address_family == 1 else (V2_INET6, socket.AF_INET6)
    _need(body, layout.size, _FAMILY_NAMES[kind])
    source, destination, source_port, destination_port = layout.unpack_from(body)
    return (socket.inet_ntop(kind, source), source_port), (socket.inet_ntop(kind, destination), destination_port), layout.size


def _need(body: bytes, size: int, what: str) -> int:
    if len(body) < size:
        raise ProxyHeaderError(f"v2 {what} addresses need {size} bytes, the header has {len(body)}")
    return size


def _tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    """The type-length-value entries after the addresses; they must fill the header exactly."""
    entries = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < TLV_HEAD.size:
            raise ProxyHeaderError("v2 TLV cut short")
        kind, size = TLV_HEAD.unpack_from(data, offset)
        offset += TLV_HEAD.size
        if len(data) - offset < size:
            raise ProxyHeaderError(f"v2 TLV 0x{kind:02x} of {size} bytes runs past the header")
        entries.append((kind, data[offset : offset + size]))
        offset += size
    return tuple(entries)


def _shown(word: bytes) -> str:
    """A word from the wire, safe and short for a log line."""
    return repr(word[:40])[1:]


class TrustedProxies:
    """The peers of `--proxy-from`: they must, and only they may, name the client they speak for.

    With proxies configured, every connection asks `trusts` before its
    first byte is read, so the test is integer arithmetic on what
    ``inet_pton`` makes of the peer's text: `ipaddress` objects would
    cost 10 µs a connection, half of what answering one costs.
    """

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks = tuple(networks)
        self._masks = {
            version: tuple(
                (int(network.network_address), int(network.netmask))
                for network in self.networks
                if network.version == version
            )
            for version in (4, 6)
        }

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(network) for network in self.networks]})"

    def trusts(self, address: object) -> bool:
        """True if ``address`` (a peer tuple) is in one of the networks."""
        if not self.networks or not isinstance(address, tuple) or not address:
            return False
        host = str(address[0]).partition("%")[0]
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]
        try:
            if ":" in host:
                version, value = 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, host), "big")
            else:
                version, value = 4, int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
        except OSError:
            return False
        return any(value & mask == network for network, mask in self._masks[version])


def forwarded_client(peer: Address, forwarded_for: Sequence[str], proxies: TrustedProxies) -> Address:
    """The client an ``X-Forwarded-For`` chain names: its rightmost hop that is not a trusted proxy.

    Each proxy appends the address it heard from, so the list is read from
    the right, and only as far as trusted proxies wrote it: the first
    untrusted hop is the client, and whatever it claims further left is
    its own word.  A hop that is not an address ends the walk: the last
    trusted hop is then taken for the client.  ``forwarded_for`` holds the
    header's values, in the order they came.
    """
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    client = peer
    while hops and proxies.trusts(client):
        hop = _forwarded_hop(hops.pop())
        if hop is None:
            break
        client = hop
    return client


def _forwarded_hop(text: str) -> Address | None:
    """One ``X-Forwarded-For`` entry: ``192.0.2.1``, ``192.0.2.1:4711``, ``2001:db8::1`` or ``[2001:db8::1]:4711``."""
    host, port = text, "0"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not HOP_PORT.fullmatch(port) or int(port) > 65535:
        return None
    try:
        return str(ipaddress.ip_address(host)), int(port)
    except ValueError:
        return None


def network(text: str) -> Network:
    """A `--proxy-from` value: an address or a network (``10.0.0.0/8``, ``2001:db8::/32``); host bits are ignored.

    An IPv4-mapped network (``::ffff:10.0.0.2``) is taken as the IPv4 one
    it stands for, since peers on a dual-stack socket are compared as IPv4.
    """
    value = ipaddress.ip_network(text.strip(), strict=False)
    mapped = value.network_address.ipv4_mapped if isinstance(value, ipaddress.IPv6Network) else None
    if mapped is not None and value.prefixlen >= 96:
        return ipaddress.IPv4Network((mapped, value.prefixlen - 96))
    return value
