"""Pure parts of the setter: the request format and the entry replacement."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.setter.protocol import (
    MAX_STATUS_BYTES,
    SetRequest,
    SetterError,
    parse_length,
    parse_socket_request,
    parse_status,
    parse_tcp_request,
    socket_request_complete,
)
from fingerd.users.statusfile import format_entry, parse_status_file, replace_entry

names = st.from_regex(r"[a-z_][a-z0-9_.-]{0,10}", fullmatch=True)
ascii_digits = st.sampled_from("0123456789")
not_ascii_digits = st.characters(categories=("Nd", "No", "Nl")).filter(lambda c: c not in "0123456789")
signs = st.sampled_from("+-_.,\u2212\uff0b")
length_words = st.lists(ascii_digits | not_ascii_digits | signs, min_size=1, max_size=8).map("".join).filter(
    lambda word: not (word.isascii() and word.isdigit())
)
status_lines = st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))), max_size=5)


def clean(lines: list[str]) -> tuple[str, ...]:
    """What parsing keeps of a status: no blank lines at either end."""
    kept = list(lines)
    while kept and not kept[0].strip():
        kept.pop(0)
    while kept and not kept[-1].strip():
        kept.pop()
    return tuple(kept)


@given(names, status_lines)
def test_format_entry_reads_back(name, lines):
    expected = clean(lines)
    assert parse_status_file(format_entry(name, expected)).users[name] == expected


@given(st.binary(max_size=300), names, status_lines)
def test_replace_entry_sets_that_user_and_keeps_the_others(data, name, lines):
    before = parse_status_file(data)
    after = parse_status_file(replace_entry(data, name, clean(lines)))
    assert after.users[name] == clean(lines)
    for other, status in before.users.items():
        if other != name:
            assert after.users[other] == status


@given(st.binary(max_size=300), names)
def test_replace_entry_with_none_removes_the_user_only(data, name):
    before = parse_status_file(data)
    after = parse_status_file(replace_entry(data, name, None))
    assert name not in after.users
    assert after.users == {other: status for other, status in before.users.items() if other != name}


def test_every_other_line_is_kept_byte_for_byte():
    data = b"# header \xff\r\n\nalice: old\n  more\n# inside\n  still alice\nnot an entry\nbob: b\n\t tab\nalice: dup\n"
    result = replace_entry(data, "alice", ("new",))
    assert result == b"# header \xff\r\n\nalice: new\n# inside\nnot an entry\nbob: b\n\t tab\n"


def test_a_new_user_is_appended():
    assert replace_entry(b"# only a comment", "carol", ("hi",)) == b"# only a comment\ncarol: hi\n"
    assert replace_entry(b"", "carol", ("a", " b")) == b"carol:\n a\n  b\n"


def test_clearing_a_missing_user_changes_nothing():
    data = b"alice: x\n# c\n"
    assert replace_entry(data, "bob", None) == data


def test_status_rules():
    assert parse_status(b"\n\nhello\r\n  world\n\n") == ("hello", "  world")
    assert parse_status(b"tab\tis fine") == ("tab\tis fine",)
    with pytest.raises(SetterError, match="--clear"):
        parse_status(b"  \n\n")
    for bad in (b"esc \x1b[2J", b"bell\x07", b"nel \xc2\x85", b"rtl \xe2\x80\xae", b"cr\ronly"):
        with pytest.raises(SetterError, match="control character"):
            parse_status(bad)
    with pytest.raises(SetterError, match="UTF-8"):
        parse_status(b"\xff")
    with pytest.raises(SetterError, match="too long"):
        parse_status(b"x" * (MAX_STATUS_BYTES + 1))
    with pytest.raises(SetterError, match="lines"):
        parse_status(b"x\n" * 101)


def test_socket_requests():
    assert parse_socket_request(b"SET 5\nhello") == SetRequest("", ("hello",))
    assert parse_socket_request(b"SET 3 bob\nhi\nignored") == SetRequest("bob", ("hi",))
    assert parse_socket_request(b"CLEAR\n") == SetRequest("", None)
    assert parse_socket_request(b"CLEAR bob\n") == SetRequest("bob", None)
    for bad in (b"", b"SET", b"SET 5\nhel", b"SET x\nhi", b"DROP bob\n", b"SET 1 ../etc\nx", b"SET 1 -rf\nx",
                b"SET 0\n", b"CLEAR a b\n"):
        with pytest.raises(SetterError):
            parse_socket_request(bad)


@given(length_words)
def test_a_length_is_ascii_digits_only(word):
    assert parse_length(word) is None


@given(length_words)
def test_a_request_with_any_other_length_is_refused_at_once(word):
    data = f"SET {word} alice\nhello".encode()
    assert socket_request_complete(data), "refused at the newline, not waited for"
    with pytest.raises(SetterError, match="expected 'SET <length>"):
        parse_socket_request(data)


@given(st.integers(min_value=0, max_value=10**12 - 1), st.integers(min_value=0, max_value=3))
def test_ascii_lengths_read_as_numbers(length, zeros):
    word = "0" * zeros + str(length)
    assert parse_length(word) == (length if len(word) <= 12 else None)


def test_digits_of_other_scripts_are_not_lengths():
    for word in ("\u0663", "\u0969", "\uff13", "\u00b2", "\u2163", "+3", "-3", "3_0", " 3", "0x3", "1" * 13):
        assert parse_length(word) is None, word
    with pytest.raises(SetterError, match="expected"):
        parse_socket_request("SET \u0663\nabc".encode())
    with pytest.raises(SetterError, match="expected"):
        parse_socket_request("SET \u00b2\nab".encode())
    assert socket_request_complete("SET \u00b2\nab".encode())


def test_a_length_past_the_limit_is_refused_without_waiting():
    assert parse_length("9" * 12) == 999_999_999_999
    for length in (MAX_STATUS_BYTES + 1, 10**12 - 1):
        data = f"SET {length} alice\nhello".encode()
        assert socket_request_complete(data)
        with pytest.raises(SetterError, match="too long"):
            parse_socket_request(data)
    for data in (f"SET {'1' * 5000}\nx".encode(), b"SET 0000000000001\nx"):
        assert socket_request_complete(data)
        with pytest.raises(SetterError, match="expected"):
            parse_socket_request(data)
    status = b"x" * MAX_STATUS_BYTES
    assert not socket_request_complete(f"SET {MAX_STATUS_BYTES}\n".encode() + status[:-1])
    assert parse_socket_request(f"SET {MAX_STATUS_BYTES}\n".encode() + status).status == (status.decode(),)


def test_a_request_is_complete_only_with_its_whole_status():
    assert not socket_request_complete(b"SET 5")
    assert not socket_request_complete(b"SET 5\nhel")
    assert socket_request_complete(b"SET 5\nhello")
    assert socket_request_complete(b"CLEAR\n")
    assert socket_request_complete(b"GARBAGE\n")


def test_the_bom_does_not_hide_the_first_entry():
    data = b"\xef\xbb\xbfalice: hi\nbob: b\n"
    assert parse_status_file(replace_entry(data, "alice", None)).users == {"bob": ("b",)}
    assert replace_entry(data, "alice", ("new",)) == b"alice: new\nbob: b\n"


def test_tcp_requests():
    assert parse_tcp_request(b"alice\r\nback soon\r\n") == SetRequest("alice", ("back soon",))
    for bad in (b"alice", b"alice\nno line end", b"bad name\nx\n", b"\nx\n", b"alice\n\n"):
        with pytest.raises(SetterError):
            parse_tcp_request(bad)
