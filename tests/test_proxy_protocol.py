"""Unit and property tests for fingerd.proxy: PROXY headers v1 and v2, X-Forwarded-For, the trusted list.

The headers are built here from the format's description (HAProxy's
proxy-protocol.txt), independently of the parser, so a test that builds
and parses checks one against the other.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.proxy import (
    V1_MAX_BYTES,
    V2_MAX_BODY,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    TrustedProxies,
    forwarded_client,
    network,
    parse_header,
    starts_like_header,
)

LOCAL, PROXY = 0x20, 0x21
INET4, INET6, UNIX, UNSPEC = 0x11, 0x21, 0x31, 0x00


def v1(family: str, source: str, destination: str, source_port: int, destination_port: int) -> bytes:
    return f"PROXY {family} {source} {destination} {source_port} {destination_port}\r\n".encode()


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", len(body)) + body


def inet4(source: str, destination: str, source_port: int, destination_port: int) -> bytes:
    packed = ipaddress.IPv4Address(source).packed + ipaddress.IPv4Address(destination).packed
    return packed + struct.pack("!HH", source_port, destination_port)


def inet6(source: str, destination: str, source_port: int, destination_port: int) -> bytes:
    packed = ipaddress.IPv6Address(source).packed + ipaddress.IPv6Address(destination).packed
    return packed + struct.pack("!HH", source_port, destination_port)


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


TRUSTED = TrustedProxies([network("10.0.0.0/8"), network("2001:db8:1::/48")])

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
port = st.integers(0, 65535)
tlvs = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=60)), max_size=6)


# v1


def test_ipv4_compatible_and_mapped_addresses_read_as_the_kernel_writes_them():
    assert parse_header(b"PROXY TCP6 ::102:304 ::1 1 2\r\n").source == ("::1.2.3.4", 1)
    mapped = parse_header(v2(PROXY, INET6, inet6("::ffff:192.0.2.1", "::1", 1, 2)))
    assert mapped is not None and mapped.source == ("::ffff:192.0.2.1", 1)


def test_v1_tcp4_and_tcp6_headers_name_the_client():
    header = parse_header(b"PROXY TCP4 192.0.2.7 198.51.100.1 4711 79\r\nalice\r\n")
    assert header == ProxyHeader(1, 43, ("192.0.2.7", 4711), ("198.51.100.1", 79))
    header = parse_header(b"PROXY TCP6 2001:DB8::7 2001:db8::1 65535 79\r\n")
    assert header is not None
    assert header.source == ("2001:db8::7", 65535)
    assert header.destination == ("2001:db8::1", 79)


def test_v1_unknown_names_no_client():
    assert parse_header(b"PROXY UNKNOWN\r\n") == ProxyHeader(1, 15)
    header = parse_header(b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\nbob\r\n")
    assert header is not None and header.source is None and header.length == 39


def test_v1_longest_header_fits_in_107_bytes():
    longest = b"PROXY UNKNOWN " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n"
    assert len(longest) == V1_MAX_BYTES
    assert parse_header(longest) == ProxyHeader(1, V1_MAX_BYTES)


# v2


def test_v2_proxy_ipv4_ipv6_unix_and_unspec():
    header = parse_header(v2(PROXY, INET4, inet4("192.0.2.9", "198.51.100.1", 1000, 79)) + b"alice\r\n")
    assert header == ProxyHeader(2, 28, ("192.0.2.9", 1000), ("198.51.100.1", 79))
    header = parse_header(v2(PROXY, INET6, inet6("2001:db8::9", "2001:db8::1", 2000, 79)))
    assert header == ProxyHeader(2, 52, ("2001:db8::9", 2000), ("2001:db8::1", 79))
    udp = parse_header(v2(PROXY, 0x12, inet4("192.0.2.9", "198.51.100.1", 1000, 79)))
    assert udp is not None and udp.source == ("192.0.2.9", 1000)
    unix = parse_header(v2(PROXY, UNIX, b"/run/a".ljust(108, b"\0") + b"/run/b".ljust(108, b"\0")))
    assert unix == ProxyHeader(2, 232)
    assert parse_header(v2(PROXY, UNSPEC, b"")) == ProxyHeader(2, 16)


def test_v2_local_is_the_proxy_speaking_for_itself():
    assert parse_header(v2(LOCAL, UNSPEC, b"")) == ProxyHeader(2, 16, local=True)
    # LOCAL's address block is skipped unread, whatever family it claims.
    header = parse_header(v2(LOCAL, INET4, inet4("192.0.2.9", "198.51.100.1", 1, 2)) + b"x")
    assert header == ProxyHeader(2, 28, local=True)


def test_v2_tlvs_are_read_and_must_fill_the_header():
    body = inet4("192.0.2.9", "198.51.100.1", 1000, 79) + tlv(0x05, b"unique") + tlv(0x04, b"")
    header = parse_header(v2(PROXY, INET4, body))
    assert header is not None and header.tlvs == ((0x05, b"unique"), (0x04, b""))
    with pytest.raises(ProxyHeaderError, match="cut short"):
        parse_header(v2(PROXY, INET4, inet4("192.0.2.9", "198.51.100.1", 1, 2) + b"\x05\x00"))
    with pytest.raises(ProxyHeaderError, match="runs past"):
        parse_header(v2(PROXY, INET4, inet4("192.0.2.9", "198.51.100.1", 1, 2) + b"\x05\x00\x09abc"))


def test_v2_header_bigger_than_the_limit_is_refused_before_it_arrives():
    fixed = V2_SIGNATURE + bytes([PROXY, INET4]) + struct.pack("!H", V2_MAX_BODY + 1)
    with pytest.raises(ProxyHeaderError, match="more than"):
        parse_header(fixed)
    allowed = v2(PROXY, INET4, inet4("192.0.2.9", "198.51.100.1", 1, 2) + tlv(0xE0, bytes(V2_MAX_BODY - 15)))
    assert parse_header(allowed) is not None


# malformed


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"alice\r\n", "no PROXY header"),
        (b"GET / HTTP/1.0\r\n", "no PROXY header"),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "is not TCP4"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "both ports"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "both ports"),
        (b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", "not an IPv4"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "not an IPv4"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "not an IPv6"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "not an IPv6"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "from 0 to 65535"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 079 2\r\n", "from 0 to 65535"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "from 0 to 65535"),
        (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "both ports"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "without CR LF"),
        (b"PROXY " + b"x" * 200, "without CR LF"),
        (V2_SIGNATURE + bytes([0x11, INET4, 0, 0]), "version 1"),
        (V2_SIGNATURE + bytes([0x22, INET4, 0, 0]), "neither LOCAL nor PROXY"),
        (V2_SIGNATURE + bytes([PROXY, 0x41, 0, 0]), "not defined"),
        (V2_SIGNATURE + bytes([PROXY, 0x13, 0, 0]), "not defined"),
        (V2_SIGNATURE + bytes([PROXY, 0x10, 0, 12]) + bytes(12), "not defined"),
        (V2_SIGNATURE + bytes([PROXY, 0x01, 0, 0]), "not defined"),
        (V2_SIGNATURE + bytes([PROXY, 0x20, 0, 0]), "not defined"),
        (V2_SIGNATURE + bytes([PROXY, 0x30, 0, 0]), "not defined"),
        (v2(PROXY, INET4, b"\x01\x02\x03"), "need 12 bytes"),
        (v2(PROXY, INET6, inet4("1.2.3.4", "5.6.7.8", 1, 2)), "need 36 bytes"),
        (v2(PROXY, UNIX, b"/run/a"), "need 216 bytes"),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(data: bytes, reason: str):
    with pytest.raises(ProxyHeaderError, match=reason):
        parse_header(data)


def test_the_reason_shows_what_was_sent_safely():
    with pytest.raises(ProxyHeaderError) as refused:
        parse_header(b"PROXY TCP4 \x1b[2J\xff 5.6.7.8 1 2\r\n")
    assert "\x1b" not in str(refused.value) and "\\x1b" in str(refused.value)


# properties


headers = st.one_of(
    st.builds(lambda s, d, sp, dp: v1("TCP4", s, d, sp, dp), ipv4, ipv4, port, port),
    st.builds(lambda s, d, sp, dp: v1("TCP6", s, d, sp, dp), ipv6, ipv6, port, port),
    st.builds(
        lambda s, d, sp, dp, extra: v2(PROXY, INET4, inet4(s, d, sp, dp) + b"".join(tlv(*e) for e in extra)),
        ipv4, ipv4, port, port, tlvs,
    ),
    st.builds(
        lambda s, d, sp, dp, extra: v2(PROXY, INET6, inet6(s, d, sp, dp) + b"".join(tlv(*e) for e in extra)),
        ipv6, ipv6, port, port, tlvs,
    ),
    st.just(v2(LOCAL, UNSPEC, b"")),
    st.just(b"PROXY UNKNOWN\r\n"),
)


@given(ipv4 | ipv6, ipv4 | ipv6, port, port, tlvs, st.binary(max_size=50))
def test_built_headers_parse_back(source, destination, source_port, destination_port, extra, after):
    version6 = ":" in source
    destination = destination if (":" in destination) == version6 else ("::1" if version6 else "127.0.0.1")
    text = v1("TCP6" if version6 else "TCP4", source, destination, source_port, destination_port)
    body = (inet6 if version6 else inet4)(source, destination, source_port, destination_port)
    binary = v2(PROXY, INET6 if version6 else INET4, body + b"".join(tlv(kind, value) for kind, value in extra))
    for data, version in ((text, 1), (binary, 2)):
        header = parse_header(data + after)
        assert header is not None
        assert (header.version, header.length) == (version, len(data))
        for (text, port_number), (sent, sent_port) in ((header.source, (source, source_port)),
                                                       (header.destination, (destination, destination_port))):
            assert ipaddress.ip_address(text) == ipaddress.ip_address(sent) and port_number == sent_port
            assert text == socket.inet_ntop(socket.AF_INET6 if version6 else socket.AF_INET,
                                            ipaddress.ip_address(sent).packed), "as the kernel writes peers"
    assert parse_header(binary).tlvs == tuple(extra)


@given(
    st.sampled_from([PROXY, LOCAL]),
    st.sampled_from([UNSPEC, INET4, INET6, UNIX, 0x12, 0x22, 0x32]),
    st.binary(max_size=300),
)
def test_v2_blocks_of_any_content_parse_or_are_refused(command, family, body):
    try:
        header = parse_header(v2(command, family, body))
    except ProxyHeaderError:
        assert command == PROXY, "a LOCAL block is skipped unread"
        return
    assert header is not None and header.length == 16 + len(body)
    assert header.local == (command == LOCAL)


@given(headers, st.data())
def test_any_prefix_of_a_header_is_incomplete(header, data):
    cut = data.draw(st.integers(0, len(header) - 1))
    assert parse_header(header[:cut]) is None
    assert starts_like_header(header[:cut]) is not False


@given(st.sampled_from([b"", b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", V2_SIGNATURE]), st.binary(max_size=300))
def test_arbitrary_bytes_give_a_header_none_or_a_header_error(start, rest):
    data = start + rest
    try:
        header = parse_header(data)
    except ProxyHeaderError as error:
        assert str(error)
        return
    if header is not None:
        assert 0 < header.length <= len(data)


@given(st.binary(min_size=1, max_size=300))
def test_bytes_after_a_complete_header_never_change_it(after):
    for header in (v1("TCP4", "192.0.2.1", "192.0.2.2", 1, 2), v2(LOCAL, UNSPEC, b"")):
        assert parse_header(header + after) == parse_header(header)


# X-Forwarded-For and the trusted list


def test_forwarded_for_takes_the_rightmost_untrusted_hop():
    peer = ("10.0.0.1", 40000)
    assert forwarded_client(peer, ["192.0.2.7"], TRUSTED) == ("192.0.2.7", 0)
    # Two trusted proxies appended; what the client itself wrote (198.51.100.66) is not believed.
    chain = ["198.51.100.66, 192.0.2.7", "10.0.0.2"]
    assert forwarded_client(peer, chain, TRUSTED) == ("192.0.2.7", 0)
    assert forwarded_client(peer, ["[2001:db8::5]:4711"], TRUSTED) == ("2001:db8::5", 4711)
    assert forwarded_client(peer, ["192.0.2.7:80"], TRUSTED) == ("192.0.2.7", 80)
    # Every hop trusted: the leftmost one is the client.
    assert forwarded_client(peer, ["10.0.0.3, 2001:db8:1::9"], TRUSTED) == ("10.0.0.3", 0)
    # No header: the proxy's own request.
    assert forwarded_client(peer, [], TRUSTED) == peer


def test_forwarded_for_stops_at_a_hop_that_is_not_an_address():
    peer = ("10.0.0.1", 40000)
    for value in ("unknown", "_hidden", "192.0.2.7:99999", "192.0.2.7:x", "[2001:db8::5]x", "2001:db8::5]", "", "٣.1.1.1"):
        assert forwarded_client(peer, [f"198.51.100.1, {value}"], TRUSTED) == peer, value
    assert forwarded_client(peer, ["unknown, 10.0.0.9"], TRUSTED) == ("10.0.0.9", 0)


def test_forwarded_for_from_an_untrusted_peer_is_ignored():
    assert forwarded_client(("192.0.2.50", 1), ["198.51.100.1"], TRUSTED) == ("192.0.2.50", 1)
    assert forwarded_client(("10.0.0.1", 1), ["198.51.100.1"], TrustedProxies()) == ("10.0.0.1", 1)


def test_trusted_proxies_match_mapped_and_scoped_addresses():
    assert TRUSTED.trusts(("::ffff:10.1.2.3", 5))
    assert TRUSTED.trusts(("2001:db8:1::1%eth0", 5, 0, 2))
    assert not TRUSTED.trusts(("::ffff:11.1.2.3", 5))
    assert not TRUSTED.trusts("/run/fingerd/setter.sock")
    assert not TRUSTED.trusts(("not an address", 5))
    assert not TrustedProxies().trusts(("10.0.0.1", 5))
    assert not TrustedProxies()


def test_a_network_ignores_host_bits():
    assert network(" 10.1.2.3/8 ") == ipaddress.ip_network("10.0.0.0/8")
    assert network("2001:db8::1") == ipaddress.ip_network("2001:db8::1/128")
    assert network("::ffff:10.0.0.2") == ipaddress.ip_network("10.0.0.2/32")
    assert network("::ffff:10.0.0.0/104") == ipaddress.ip_network("10.0.0.0/8")
    assert TrustedProxies([network("::ffff:10.0.0.2")]).trusts(("::ffff:10.0.0.2", 1))
    with pytest.raises(ValueError):
        network("10.0.0.0/33")
