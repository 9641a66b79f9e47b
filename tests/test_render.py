"""Unit and property tests for fingerd.render: nothing unsafe ever reaches the wire."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.render import printable, reply_bytes, visible, visible_bytes

FORBIDDEN = frozenset(
    [chr(code) for code in range(0x20) if code != 0x09]
    + ["\x7f"]
    + [chr(code) for code in range(0x80, 0xA0)]
    + ["\u2028", "\u2029"]
    + [chr(code) for code in range(0x202A, 0x202F)]
    + [chr(code) for code in range(0x2066, 0x206A)]
)
"""Characters never sent (docs/behavior.md, "Sending": control characters)."""

BIDI_MARKS = frozenset(["\u061c", "\u200e", "\u200f"])
"""Directional marks the module also escapes, beyond the control characters."""

DANGEROUS = sorted(FORBIDDEN) + ["\t", "\\", "^", "\ud800", "\udcff", "\ufeff", "\u061c", "\u200e", "\u200f"]

any_char = st.characters(exclude_categories=())
risky_text = st.text(alphabet=st.one_of(any_char, st.sampled_from(DANGEROUS)))
risky_bytes = st.one_of(
    st.binary(),
    st.lists(st.sampled_from([c.encode("utf-8", "surrogatepass") for c in DANGEROUS] + [b"\xff", b"\xc2", b"a"])).map(
        b"".join
    ),
)


def assert_safe_text(text: str) -> None:
    text.encode("utf-8")
    bad = sorted({char for char in text if char in FORBIDDEN})
    assert not bad, f"unsafe characters {bad!r} in {text!r}"


def assert_safe_reply(data: bytes, line_count: int) -> None:
    text = data.decode("utf-8")
    assert data.count(b"\r\n") == line_count
    assert data.endswith(b"\r\n") or line_count == 0
    assert_safe_text(text.replace("\r\n", ""))


# visible: examples


@pytest.mark.parametrize(
    "text, expected",
    [
        ("plain text", "plain text"),
        ("tab\tkept", "tab\tkept"),
        ("\x1b[2J\x1b[31mred", "^[[2J^[[31mred"),
        ("\x00", "^@"),
        ("\x07bell", "^Gbell"),
        ("a\rb", "a^Mb"),
        ("a\nb", "a^Jb"),
        ("\x0c", "^L"),
        ("\x1f", "^_"),
        ("\x7f", "^?"),
        ("\x80", "\\x80"),
        ("\x85", "\\x85"),
        ("\x9b31m", "\\x9b31m"),
        ("\x9f", "\\x9f"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
        ("\u202a", "\\u202a"),
        ("abc\u202edcba", "abc\\u202edcba"),
        ("\u2066x\u2069", "\\u2066x\\u2069"),
        ("\u2067\u2068", "\\u2067\\u2068"),
        ("caf\u00e9 \u65e5\u672c \U0001f600", "caf\u00e9 \u65e5\u672c \U0001f600"),
        ("\u00a0nbsp", "\u00a0nbsp"),
        ("\ud800", "\\ud800"),
        ("\u061c\u200e\u200f", "\\u061c\\u200e\\u200f"),
        ("", ""),
    ],
)
def test_visible_examples(text, expected):
    assert visible(text) == expected


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"alice", "alice"),
        (b"\xff", "\\xff"),
        (b"al\xc3ice", "al\\xc3ice"),
        (b"\xc2\x85", "\\x85"),
        (b"\xe2\x80\xae", "\\u202e"),
        (b"\xe2\x80\xa8", "\\u2028"),
        (b"\xed\xa0\x80", "\\xed\\xa0\\x80"),
        (b"\x1b]0;pwned\x07", "^[]0;pwned^G"),
        (b"\xff\xf4\xff\xfd\x06", "\\xff\\xf4\\xff\\xfd^F"),
        ("caf\u00e9".encode(), "caf\u00e9"),
    ],
)
def test_visible_bytes_examples(data, expected):
    assert visible_bytes(data) == expected


# reply_bytes: examples


def test_reply_bytes_joins_with_crlf():
    assert reply_bytes(["alice", "bob"]) == b"alice\r\nbob\r\n"


def test_reply_bytes_empty_line_list():
    assert reply_bytes([]) == b""


def test_reply_bytes_empty_line():
    assert reply_bytes([""]) == b"\r\n"


def test_reply_bytes_embedded_line_ends_are_shown():
    assert reply_bytes(["a\r\nb", "c\n"]) == b"a^M^Jb\r\nc^J\r\n"


def test_reply_bytes_encodes_utf8():
    assert reply_bytes(["caf\u00e9"]) == b"caf\xc3\xa9\r\n"


def test_reply_bytes_accepts_a_generator():
    assert reply_bytes(line for line in ("x", "\x1b")) == b"x\r\n^[\r\n"


# properties


@given(risky_text)
def test_visible_output_is_safe(text):
    assert_safe_text(visible(text))


@given(risky_bytes)
def test_visible_bytes_output_is_safe(data):
    assert_safe_text(visible_bytes(data))


@given(st.lists(risky_text, max_size=8))
def test_reply_bytes_output_is_safe(lines):
    assert_safe_reply(reply_bytes(lines), len(lines))


@given(st.lists(risky_text, max_size=8))
def test_reply_bytes_every_line_ends_in_crlf(lines):
    parts = reply_bytes(lines).split(b"\r\n")
    assert parts[-1] == b""
    assert len(parts) == len(lines) + 1
    assert all(b"\r" not in part and b"\n" not in part for part in parts)


@given(st.lists(risky_text, max_size=8))
def test_reply_bytes_is_visible_per_line(lines):
    assert reply_bytes(lines) == b"".join(visible(line).encode() + b"\r\n" for line in lines)


@given(st.text().filter(lambda text: not (FORBIDDEN | BIDI_MARKS).intersection(text)))
def test_visible_keeps_safe_text(text):
    assert visible(text) == text


@given(st.text())
def test_visible_bytes_of_valid_utf8_is_visible(text):
    assert visible_bytes(text.encode()) == visible(text)


@given(risky_text)
def test_visible_never_shortens(text):
    assert len(visible(text)) >= len(text)


# printable: what a client shows by default (RFC 1288 3.3)


def test_printable_drops_what_visible_escapes():
    assert printable("red \x1b[31malert\x07 c1\x85 rtl\u202eevil\ttab caf\u00e9") == "red [31malert c1 rtlevil\ttab caf\u00e9"


@given(risky_text)
def test_printable_output_is_safe(text):
    result = printable(text)
    assert_safe_text(result)
    assert not BIDI_MARKS.intersection(result)


@given(st.text().filter(lambda text: not (FORBIDDEN | BIDI_MARKS).intersection(text)))
def test_printable_keeps_safe_text(text):
    assert printable(text) == text
