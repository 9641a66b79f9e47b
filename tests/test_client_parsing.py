"""Unit and property tests for the client's pure parts: targets, hosts, ports, URLs, showing a reply."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.client import (
    Target,
    check_name,
    host_port_text,
    parse_host,
    parse_port,
    parse_target,
    reply_lines,
    show,
    split_host_port,
    target_from_words,
)

# examples


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", Target()),
        ("alice", Target("alice")),
        ("/W alice", Target("alice", verbose=True)),
        ("/walice", Target("alice", verbose=True)),
        ("@host", Target("", (), "host")),
        ("alice@host", Target("alice", (), "host")),
        ("alice@Finger.Example.ORG.", Target("alice", (), "finger.example.org")),
        ("alice@host:7979", Target("alice", (), "host", 7979)),
        ("alice@192.0.2.1:79", Target("alice", (), "192.0.2.1", 79)),
        ("alice@[::1]", Target("alice", (), "::1")),
        ("alice@[::1]:7979", Target("alice", (), "::1", 7979)),
        ("alice@[0:0::1]:7979", Target("alice", (), "::1", 7979)),
        ("alice@::1", Target("alice", (), "::1")),
        ("alice@fe80::1%eth0", Target("alice", (), "fe80::1%eth0")),
        ("alice@one.example@two.example:7979", Target("alice", ("one.example",), "two.example", 7979)),
        ("alice@[::1]:80@two.example", Target("alice", ("[::1]:80",), "two.example")),
        ("  alice @ host ", Target("alice", (), "host")),
        ("finger://host/alice", Target("alice", (), "host")),
        ("FINGER://host:7979/alice", Target("alice", (), "host", 7979)),
        ("finger://[::1]:7979/alice", Target("alice", (), "::1", 7979)),
        ("finger://host", Target("", (), "host")),
        ("finger://host/", Target("", (), "host")),
        ("finger://host//W%20alice", Target("alice", (), "host", verbose=True)),
        ("finger://host/alice@one.example", Target("alice", ("one.example",), "host")),
        ("finger://host/%C3%A9lise", Target("\u00e9lise", (), "host")),
    ],
)
def test_parse_target_examples(text, expected):
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "alice@",
        "alice@host:",
        "alice@host:0",
        "alice@host:65536",
        "alice@host:http",
        "alice@host:\u00b2",
        "alice@host:79:79",
        "alice@[::1",
        "alice@[::1]x",
        "alice@[127.0.0.1]",
        "alice@[host]",
        "alice@[fe80::1%\x1b[2J]",
        "alice@fe80::1%a b",
        "alice@fe80::1%\u00e9",
        "alice@fe80::1%",
        "alice@-host",
        "alice@host-",
        "alice@ho st",
        "alice@ho/st",
        "alice@h\u00f6st.example",
        "alice@2130706433",
        "alice@0x7f.1",
        "alice@127.1",
        "alice@host.123",
        "alice@" + "a" * 64,
        "alice@" + ".".join(["a" * 60] * 5),
        "alice@one@",
        "alice@@host",
        "al\rice@host",
        "al\nice",
        "alice\x1b[2J",
        "alice\u202e",
        "alice\x85",
        "finger://",
        "finger:///alice",
        "finger://user@host/alice",
        "finger://host/alice?x",
        "finger://host/alice#x",
        "finger://host/al%0D%0Aice",
        "finger://host/%FF",
        "finger://host:0/alice",
    ],
)
def test_parse_target_refuses(text):
    with pytest.raises(ValueError):
        parse_target(text)


def test_defaults_apply_only_when_the_target_names_none():
    assert parse_target("alice", "example.org", 7979) == Target("alice", (), "example.org", 7979)
    assert parse_target("alice@host", "example.org", 7979) == Target("alice", (), "host", 7979)
    assert parse_target("alice@host:80", "example.org", 7979) == Target("alice", (), "host", 80)


@pytest.mark.parametrize(
    "target, line",
    [
        (Target(), b"\r\n"),
        (Target(verbose=True), b"/W\r\n"),
        (Target("alice"), b"alice\r\n"),
        (Target("alice", verbose=True), b"/W alice\r\n"),
        (Target("alice", ("one", "two:7979")), b"alice@one@two:7979\r\n"),
        (Target("", ("one",)), b"@one\r\n"),
        (Target("\u00e9lise"), "\u00e9lise\r\n".encode()),
    ],
)
def test_query_line(target, line):
    assert target.query() == line


def test_where_brackets_ipv6():
    assert Target(host="::1", port=7979).where() == "[::1]:7979"
    assert Target(host="example.org").where() == "example.org:79"


def test_words_from_the_command_line():
    assert target_from_words([], False, 79) == Target()
    assert target_from_words(["/W", "alice@host"], False, 79) == Target("alice", (), "host", verbose=True)
    assert target_from_words(["alice"], True, 7979) == Target("alice", (), "localhost", 7979, True)
    with pytest.raises(ValueError):
        target_from_words(["alice", "bob"], False, 79)


def test_reply_lines_take_crlf_and_lf():
    assert reply_lines(b"a\r\nb\nc") == [b"a", b"b", b"c"]
    assert reply_lines(b"") == []
    assert reply_lines(b"\r\n") == [b""]


def test_show_filters_escapes_and_keeps_text():
    data = b"red \x1b[31malert\x1b[0m\r\nc1 \xc2\x9b bidi \xe2\x80\xae bad \xff tab\tcaf\xc3\xa9\r\nbare\rcr\n"
    assert show(data) == "red [31malert[0m\nc1  bidi  bad \ufffd tab\tcaf\u00e9\nbarecr\n"
    assert show(data, escape=True) == (
        "red ^[[31malert^[[0m\nc1 \\x9b bidi \\u202e bad \\xff tab\tcaf\u00e9\nbare^Mcr\n"
    )
    assert show(data, ascii_only=True) == "red [31malert[0m\nc1  bidi  bad  tab\tcaf\nbarecr\n"


# properties

LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z]", fullmatch=True)
host_names = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.one_of(
    st.ip_addresses(v=6).map(str),
    st.tuples(st.ip_addresses(v=6, network="fe80::/10").map(str), st.sampled_from(["eth0", "2", "wlp3s0"])).map(
        "%".join
    ),
)
hosts = st.one_of(host_names, ipv4, ipv6)
ports = st.integers(1, 65535)
user_names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}", fullmatch=True)
UNSAFE_CODES = [*range(0x09), *range(0x0A, 0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029]
CONTROLS = [chr(code) for code in [*UNSAFE_CODES, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]]
"""What render.visible escapes: never in a query line, never printed."""


@given(hosts, ports)
def test_host_and_port_round_trip(host, port):
    assert split_host_port(host_port_text(host, port)) == (host, port)


@given(hosts)
def test_host_without_port_takes_the_default(host):
    text = f"[{host}]" if ":" in host else host
    assert split_host_port(text, 7979) == (host, 7979)


@given(hosts)
def test_canonical_hosts_are_fixed_points(host):
    assert parse_host(host) == host
    assert parse_host(parse_host(host.upper())) == parse_host(host.upper())


@given(user_names, st.lists(hosts, max_size=3), hosts, ports, st.booleans())
def test_typed_target_round_trips(name, via, host, port, verbose):
    via_text = tuple(host_port_text(item, 79) for item in via)
    text = ("/W " if verbose else "") + "@".join((name, *via_text, host_port_text(host, port)))
    assert parse_target(text) == Target(name, via_text, host, port, verbose)


@given(user_names, hosts, ports)
def test_url_and_typed_forms_agree(name, host, port):
    where = host_port_text(host, port)
    assert parse_target(f"finger://{where}/{quote(name)}") == parse_target(f"{name}@{where}")


@given(st.text(max_size=60))
def test_parse_target_raises_only_value_error(text):
    try:
        target = parse_target(text)
    except ValueError:
        return
    assert 0 < target.port < 65536


@given(st.text(max_size=60), st.sampled_from(CONTROLS))
def test_no_query_line_carries_a_control_character(text, control):
    candidates = (
        text,
        text + control,
        control + text,
        f"finger://host/{quote(text + control)}",
        f"alice@[fe80::1%{text}{control}]@host",
        f"alice@{text}{control}@host",
    )
    for candidate in candidates:
        try:
            line = parse_target(candidate).query()
        except ValueError:
            continue
        body = line[:-2].decode("utf-8")
        assert line.endswith(b"\r\n")
        assert not any(char in body for char in CONTROLS)


@given(st.text(max_size=40))
def test_check_name_accepts_exactly_the_names_without_controls(name):
    if any(char in name for char in CONTROLS):
        with pytest.raises(ValueError):
            check_name(name)
    else:
        assert check_name(name) == name


@given(st.integers())
def test_ports_outside_the_range_are_refused(number):
    if 0 < number < 65536:
        assert parse_port(str(number)) == number
    else:
        with pytest.raises(ValueError):
            parse_port(str(number))


@given(st.binary(max_size=300))
def test_show_never_prints_a_control_character(data):
    for escape in (False, True):
        text = show(data, escape=escape)
        assert text.endswith("\n") or not text
        assert not any(char in text.replace("\n", "") for char in CONTROLS)
