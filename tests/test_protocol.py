"""Unit and property tests for fingerd.protocol: line splitting, limits, query parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.protocol import (
    MAX_QUERY_BYTES,
    first_line,
    NAME_PATTERN,
    Kind,
    Query,
    is_valid_name,
    line_is_too_long,
    parse_query,
    split_line,
)

valid_names = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\Z")


# split_line


def test_split_line_crlf():
    assert split_line(b"alice\r\n") == (b"alice", True)


def test_split_line_bare_lf():
    assert split_line(b"alice\n") == (b"alice", True)


def test_split_line_only_first_line_counts():
    assert split_line(b"alice\r\nbob\r\n") == (b"alice", True)


def test_split_line_without_line_end_is_the_whole_buffer():
    assert split_line(b"alice") == (b"alice", False)


def test_split_line_drops_trailing_cr_of_unfinished_line():
    assert split_line(b"alice\r") == (b"alice", False)


def test_split_line_keeps_inner_cr():
    assert split_line(b"al\rice\r\n") == (b"al\rice", True)


def test_split_line_drops_only_one_cr():
    assert split_line(b"alice\r\r\n") == (b"alice\r", True)


def test_split_line_empty():
    assert split_line(b"") == (b"", False)
    assert split_line(b"\r\n") == (b"", True)


@given(st.binary())
def test_split_line_never_returns_a_line_end(data):
    line, complete = split_line(data)
    assert b"\n" not in line
    assert not line.endswith(b"\r")
    assert complete == (b"\n" in data)
    assert data.startswith(line)


# line_is_too_long


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"x" * MAX_QUERY_BYTES + b"\r\n", False),
        (b"x" * (MAX_QUERY_BYTES + 1) + b"\r\n", True),
        (b"x" * MAX_QUERY_BYTES + b"\n", False),
        (b"x" * (MAX_QUERY_BYTES + 1) + b"\n", True),
        (b"x" * MAX_QUERY_BYTES, False),
        (b"x" * MAX_QUERY_BYTES + b"\r", False),
        (b"x" * (MAX_QUERY_BYTES + 1), True),
        (b"x" * (MAX_QUERY_BYTES + 1) + b"\r", True),
        (b"x" * MAX_QUERY_BYTES + b"\r\r", True),
        (b"alice\r\n" + b"x" * 5000, False),
        (b"", False),
    ],
)
def test_line_is_too_long_boundaries(data, expected):
    assert line_is_too_long(data) is expected


@given(st.binary(max_size=1100), st.binary(max_size=40))
def test_line_is_too_long_is_final_once_true(data, more):
    if line_is_too_long(data):
        assert line_is_too_long(data + more)
        assert parse_query(split_line(data + more + b"\n")[0]).kind is Kind.TOO_LONG


@given(st.integers(0, 1100), st.sampled_from([b"", b"\r", b"\r\r", b"x"]))
def test_line_is_too_long_agrees_with_parse_once_line_ends(size, tail):
    data = b"a" * size + tail
    line, _ = split_line(data + b"\n")
    expected = parse_query(line).kind is Kind.TOO_LONG
    assert line_is_too_long(data) is expected
    assert line_is_too_long(data + b"\n") is expected


# is_valid_name


@pytest.mark.parametrize("name", ["alice", "0", "_", "a.b-c_d", "Alice", "x" * 32, "a..b", "a-"])
def test_valid_names(name):
    assert is_valid_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "*",
        "-l",
        "--help",
        ".hidden",
        "x" * 33,
        "alice\n",
        "alice\x00",
        "al ice",
        "../../etc/passwd",
        "|/bin/id",
        ";id",
        "$(id)",
        "`id`",
        "%n%s",
        "\u00e9lise",
        "\uff41lice",
        "ali\u0441e",
        "alice@host",
    ],
)
def test_invalid_names(name):
    assert not is_valid_name(name)


@given(valid_names)
def test_generated_valid_names_are_valid(name):
    assert is_valid_name(name)


@given(st.text())
def test_is_valid_name_matches_the_pattern(name):
    assert is_valid_name(name) == (NAME_PATTERN.fullmatch(name) is not None)
    if is_valid_name(name):
        assert name.isascii() and 1 <= len(name) <= 32 and name[0] not in ".-"


# parse_query: examples


@pytest.mark.parametrize(
    "line, expected",
    [
        (b"alice", Query(Kind.USER, False, "alice")),
        (b"", Query(Kind.LIST)),
        (b"   ", Query(Kind.LIST)),
        (b"/W", Query(Kind.LIST, True)),
        (b"/w", Query(Kind.LIST, True)),
        (b"/W   ", Query(Kind.LIST, True)),
        (b"/W alice", Query(Kind.USER, True, "alice")),
        (b"/w alice", Query(Kind.USER, True, "alice")),
        (b"/Walice", Query(Kind.USER, True, "alice")),
        (b"  /W    alice  ", Query(Kind.USER, True, "alice")),
        (b"\t/W\talice\t", Query(Kind.USER, True, "alice")),
        (b"  alice  ", Query(Kind.USER, False, "alice")),
        (b"0", Query(Kind.USER, False, "0")),
        (b".", Query(Kind.USER, False, ".")),
        (b"*", Query(Kind.USER, False, "*")),
        (b"-l", Query(Kind.USER, False, "-l")),
        (b"--help", Query(Kind.USER, False, "--help")),
        (b"/W -l", Query(Kind.USER, True, "-l")),
        (b"|/bin/id", Query(Kind.USER, False, "|/bin/id")),
        (b";id", Query(Kind.USER, False, ";id")),
        (b"$(id)", Query(Kind.USER, False, "$(id)")),
        (b"../../etc/passwd", Query(Kind.USER, False, "../../etc/passwd")),
        (b"%n%s", Query(Kind.USER, False, "%n%s")),
        (b"GET / HTTP/1.0", Query(Kind.USER, False, "GET / HTTP/1.0")),
        (b"alice\x00", Query(Kind.USER, False, "alice\x00")),
        (b"\x00", Query(Kind.USER, False, "\x00")),
    ],
)
def test_parse_query_examples(line, expected):
    assert parse_query(line) == expected


def test_parse_query_forward():
    assert parse_query(b"alice@example.org") == Query(Kind.FORWARD, False, "alice", ("example.org",))


def test_parse_query_forward_chain_and_spaces():
    query = parse_query(b"/W  alice @ one.example @two.example:7979 ")
    assert query == Query(Kind.FORWARD, True, "alice", ("one.example", "two.example:7979"))


def test_parse_query_forward_without_user():
    assert parse_query(b"@host") == Query(Kind.FORWARD, False, "", ("host",))


def test_parse_query_only_at_signs():
    assert parse_query(b"@@@@") == Query(Kind.FORWARD, False, "", ("", "", "", ""))


def test_parse_query_forty_deep_chain():
    line = b"alice" + b"".join(b"@h%d" % n for n in range(40))
    query = parse_query(line)
    assert query.kind is Kind.FORWARD
    assert query.name == "alice"
    assert query.hosts == tuple(f"h{n}" for n in range(40))


def test_parse_query_telnet_iac_bytes():
    query = parse_query(b"\xff\xf4\xff\xfd\x06")
    assert query == Query(Kind.USER, False, "\\xff\\xf4\\xff\\xfd\x06")


def test_parse_query_invalid_utf8_kept_as_escapes():
    assert parse_query(b"al\xc3ice") == Query(Kind.USER, False, "al\\xc3ice")


def test_parse_query_valid_utf8_decoded():
    assert parse_query("\u00e9lise".encode()) == Query(Kind.USER, False, "\u00e9lise")


def test_parse_query_1024_bytes_is_a_query():
    query = parse_query(b"a" * MAX_QUERY_BYTES)
    assert query == Query(Kind.USER, False, "a" * MAX_QUERY_BYTES)


def test_parse_query_1025_bytes_is_too_long():
    assert parse_query(b"a" * (MAX_QUERY_BYTES + 1)) == Query(Kind.TOO_LONG)


def test_parse_query_1025_spaces_is_too_long():
    assert parse_query(b" " * (MAX_QUERY_BYTES + 1)).kind is Kind.TOO_LONG


def test_parse_query_of_split_crlf_and_lf_lines_agree():
    assert parse_query(split_line(b"/W alice\r\n")[0]) == parse_query(split_line(b"/W alice\n")[0])


# parse_query: properties


@given(st.binary(max_size=2000))
def test_parse_query_is_total(line):
    query = parse_query(line)
    assert isinstance(query, Query)
    assert isinstance(query.kind, Kind)
    assert isinstance(query.name, str)
    assert all(isinstance(host, str) for host in query.hosts)


@given(st.binary(max_size=1100))
def test_parse_query_too_long_exactly_past_the_limit(line):
    assert (parse_query(line).kind is Kind.TOO_LONG) == (len(line) > MAX_QUERY_BYTES)


@given(st.binary(max_size=MAX_QUERY_BYTES))
def test_parse_query_forward_iff_at_sign(line):
    query = parse_query(line)
    if b"@" in line:
        assert query.kind is Kind.FORWARD
        assert len(query.hosts) == line.count(b"@")
    else:
        assert query.kind in (Kind.USER, Kind.LIST)
        assert query.hosts == ()


@given(st.binary(max_size=MAX_QUERY_BYTES))
def test_parse_query_name_is_trimmed(line):
    query = parse_query(line)
    assert query.name == query.name.strip(" \t")
    assert all(host == host.strip(" \t") for host in query.hosts)
    if query.kind is Kind.USER:
        assert query.name
    if query.kind is Kind.LIST:
        assert query.name == ""


@given(st.text(max_size=300).filter(lambda text: "@" not in text))
def test_parse_query_decodes_utf8_text(text):
    query = parse_query(text.encode())
    assert query.name in text
    assert query.verbose == (text.strip(" \t")[:2] in ("/W", "/w"))


@given(valid_names, st.booleans(), st.sampled_from(["", " ", "  ", "\t"]))
def test_parse_query_valid_names(name, verbose, gap):
    prefix = "/W" + gap if verbose else gap
    assert parse_query((prefix + name + gap).encode()) == Query(Kind.USER, verbose, name)


@given(st.one_of(st.binary(max_size=1100), st.binary(min_size=1020, max_size=1030)))
def test_first_line_is_the_split_line_until_it_is_too_long(data):
    line, complete = split_line(data)
    if len(data) <= MAX_QUERY_BYTES or (complete and len(line) <= MAX_QUERY_BYTES):
        assert first_line(data) == line
    elif complete:
        assert first_line(data) is None
