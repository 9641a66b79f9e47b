"""Unit and property tests for fingerd.finger.answer: a query and a table in, reply lines out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.finger.answer import (
    FORWARD_BAD_QUERY,
    FORWARD_DENIED,
    FORWARD_NOT_ALLOWED,
    LIST_DENIED,
    LIST_NAME_WIDTH,
    LIST_STATUS_WIDTH,
    NO_PLAN,
    NO_SUCH_USER,
    NO_USERS,
    TOO_LONG,
    Answer,
    Hop,
    Policy,
    answer,
    answer_now,
    forward_hop,
    list_status,
)
from fingerd.protocol import MAX_QUERY_BYTES, Kind, Query, is_valid_name, parse_query
from fingerd.render import reply_bytes
from fingerd.sources.directory import Directory
from fingerd.sources.file import FileSource
from fingerd.users.table import UserTable

STATUSES = {
    "alice": ("Writing the finger daemon",),
    "bob": ("Out to lunch", "back at 2"),
    "carol": ("first line of a plan", "  indented art"),
    "dave": (),
    "0": ("zero",),
}

CONTROL_BYTES = [bytes([code]) for code in range(0x20) if code not in (0x09, 0x0A, 0x0D)] + [b"\x7f"]
UNSAFE_UTF8 = [chr(code).encode() for code in [*range(0x80, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F)]]
UNSAFE_UTF8 += [chr(code).encode() for code in range(0x2066, 0x206A)]

FIRST = "abcXYZ019_"
REST = FIRST + ".-"
names = st.one_of(
    st.sampled_from(["alice", "Alice", "bob", "0", "root"]),
    st.builds(str.__add__, st.sampled_from(FIRST), st.text(alphabet=REST, max_size=31)),
)
nasty_text = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=()),
        st.sampled_from(["\x1b", "\r", "\n", "\x00", "\x7f", "\x85", "\x9b", "\u2028", "\u202e", "\u2066"]),
    )
)
any_tables = st.dictionaries(st.one_of(names, nasty_text), st.lists(nasty_text, max_size=4).map(tuple), max_size=8)
query_bytes = st.one_of(
    st.binary(max_size=1100),
    names.map(str.encode),
    st.tuples(st.sampled_from([b"", b"/W ", b"/w", b"  "]), names.map(str.encode)).map(b"".join),
)


def directory_of(users: dict) -> Directory:
    table = UserTable()
    table.replace(users)
    return Directory([FileSource(table)], table)


@pytest.fixture
def snapshot() -> Directory:
    return directory_of(STATUSES)


def reply(line: bytes, snapshot: Directory, policy: Policy = Policy()) -> tuple[str, ...]:
    return answer(parse_query(line), snapshot, policy).lines


def assert_wire_safe(data: bytes) -> None:
    data.decode("utf-8")
    body = data.replace(b"\r\n", b"")
    assert b"\r" not in body and b"\n" not in body
    for bad in CONTROL_BYTES + UNSAFE_UTF8:
        assert bad not in body, f"{bad!r} in {data!r}"


# one user


def test_known_user(snapshot):
    assert answer(Query(Kind.USER, False, "alice"), snapshot, Policy()) == Answer(
        ("Writing the finger daemon",), "found"
    )


def test_known_user_shows_every_status_line(snapshot):
    assert reply(b"bob", snapshot) == ("Out to lunch", "back at 2")


def test_user_without_status(snapshot):
    assert reply(b"dave", snapshot) == (NO_PLAN,)


def test_numeric_name(snapshot):
    assert reply(b"0", snapshot) == ("zero",)


def test_case_folded_lookup(snapshot):
    assert reply(b"ALICE", snapshot) == ("Writing the finger daemon",)


def test_unknown_user(snapshot):
    result = answer(Query(Kind.USER, False, "zz-missing"), snapshot, Policy())
    assert result == Answer((NO_SUCH_USER,), "no-such-user")


@pytest.mark.parametrize(
    "line",
    [
        b".",
        b"*",
        b"..",
        b"-l",
        b"--help",
        b"/W --help",
        b"|/bin/id",
        b";id",
        b"$(id)",
        b"`id`",
        b"../../etc/passwd",
        b"%n%s",
        b"GET / HTTP/1.0",
        b"\xff\xf4\xff\xfd\x06",
        b"alice\x00",
        b"\x00alice",
        b"al\xffice",
        b"alice\x1b[2J",
        b"alice\r",
        b"alice bob",
        b"a" * 33,
        b"a" * MAX_QUERY_BYTES,
    ],
)
def test_invalid_names_are_no_such_user(snapshot, line):
    assert answer(parse_query(line), snapshot, Policy()) == Answer((NO_SUCH_USER,), "no-such-user")


@pytest.mark.parametrize("name", ["-l", "--help", "../../etc/passwd", "alice\x00", "$(id)", "*"])
def test_invalid_names_never_reach_the_table(name):
    snapshot = directory_of({name: ("leaked",), "alice": ("ok",)})
    assert answer(Query(Kind.USER, False, name), snapshot, Policy()).lines == (NO_SUCH_USER,)
    assert answer(Query(Kind.USER, True, name), snapshot, Policy()).lines == (NO_SUCH_USER,)


def test_non_ascii_look_alike_is_no_such_user():
    snapshot = directory_of({"ff": ("found",), "k": ("kelvin",)})
    assert answer(Query(Kind.USER, False, "\ufb00"), snapshot, Policy()).lines == (NO_SUCH_USER,)
    assert answer(Query(Kind.USER, False, "\u212a"), snapshot, Policy()).lines == (NO_SUCH_USER,)


# verbose form


@pytest.mark.parametrize("line", [b"/W alice", b"/w alice", b"/Walice", b"  /W    alice  "])
def test_verbose_spellings(snapshot, line):
    assert reply(line, snapshot) == ("Login: alice", "Plan:", "Writing the finger daemon")


def test_verbose_shows_the_whole_plan(snapshot):
    assert reply(b"/W carol", snapshot) == ("Login: carol", "Plan:", "first line of a plan", "  indented art")


def test_verbose_without_status(snapshot):
    assert reply(b"/W dave", snapshot) == ("Login: dave", NO_PLAN)


def test_verbose_uses_the_real_name(snapshot):
    assert reply(b"/W Alice", snapshot)[0] == "Login: alice"


def test_verbose_unknown_user(snapshot):
    assert answer(Query(Kind.USER, True, "zz"), snapshot, Policy()) == Answer((NO_SUCH_USER,), "no-such-user")


# the user list


def test_list(snapshot):
    result = answer(Query(Kind.LIST), snapshot, Policy())
    assert result.outcome == "list"
    assert result.lines == (
        "0                 zero",
        "alice             Writing the finger daemon",
        "bob               Out to lunch",
        "carol             first line of a plan",
        "dave",
    )


def test_verbose_list_is_the_list(snapshot):
    assert reply(b"/W", snapshot) == reply(b"", snapshot)
    assert reply(b"  ", snapshot) == reply(b"", snapshot)


def test_list_widens_for_long_names():
    long_name = "a" * 32
    snapshot = directory_of({long_name: ("long",), "b": ("short",)})
    assert answer(Query(Kind.LIST), snapshot, Policy()).lines == (
        long_name + "  long",
        "b" + " " * 31 + "  short",
    )


def test_list_of_empty_table():
    assert answer(Query(Kind.LIST), directory_of({}), Policy()) == Answer((NO_USERS,), "list")


def test_list_cuts_a_long_first_line():
    directory = directory_of({"big": ("x" * 10_000_000, "second"), "bob": ("Out to lunch",)})
    lines = answer(Query(Kind.LIST), directory, Policy()).lines
    assert lines == ("big" + " " * 15 + "x" * (LIST_STATUS_WIDTH - 3) + "...", "bob               Out to lunch")


def test_list_keeps_a_first_line_of_exactly_the_width():
    assert list_status(("y" * LIST_STATUS_WIDTH,)) == "y" * LIST_STATUS_WIDTH
    assert list_status(("y" * (LIST_STATUS_WIDTH + 1),)) == "y" * (LIST_STATUS_WIDTH - 3) + "..."
    assert list_status(()) == ""


def test_a_long_status_is_cut_only_in_the_list():
    status = ("x" * 100_000, "more")
    directory = directory_of({"big": status})
    assert reply(b"big", directory) == status
    assert reply(b"/W big", directory) == ("Login: big", "Plan:", *status)


def test_list_denied(snapshot):
    result = answer(Query(Kind.LIST), snapshot, Policy(list_users=False))
    assert result == Answer((LIST_DENIED,), "list-denied")


def test_verbose_list_denied(snapshot):
    assert answer(Query(Kind.LIST, True), snapshot, Policy(list_users=False)).lines == (LIST_DENIED,)


def test_list_denied_does_not_deny_users(snapshot):
    assert reply(b"alice", snapshot, Policy(list_users=False)) == ("Writing the finger daemon",)


# forwarding and limits


@pytest.mark.parametrize("line", [b"alice@example.org", b"@host", b"@@@@", b"/W alice@a@b", b"alice" + b"@h" * 40])
def test_forwarding_denied(snapshot, line):
    assert answer(parse_query(line), snapshot, Policy()) == Answer((FORWARD_DENIED,), "forward-denied")


def test_too_long(snapshot):
    result = answer(parse_query(b"a" * (MAX_QUERY_BYTES + 1)), snapshot, Policy())
    assert result == Answer((TOO_LONG,), "too-long")
    assert str(MAX_QUERY_BYTES) in TOO_LONG


def test_fixed_texts():
    assert NO_SUCH_USER == "No such user"
    assert LIST_DENIED == "Finger online user list denied"
    assert FORWARD_DENIED == "Finger forwarding service denied"


# properties


@given(query_bytes, any_tables, st.booleans())
def test_every_reply_is_wire_safe(line, users, list_users):
    result = answer(parse_query(line), directory_of(users), Policy(list_users))
    assert result.lines
    assert all(isinstance(text, str) for text in result.lines)
    assert result.outcome in {"found", "no-such-user", "list", "list-denied", "forward-denied", "too-long"}
    data = reply_bytes(result.lines)
    assert data.count(b"\r\n") == len(result.lines)
    assert_wire_safe(data)


@given(st.one_of(nasty_text, st.binary(max_size=200).map(lambda data: data.decode("utf-8", "replace"))), any_tables)
def test_invalid_names_are_always_no_such_user(name, users):
    if is_valid_name(name):
        return
    users = {**users, name: ("must not be shown",)}
    for verbose in (False, True):
        result = answer(Query(Kind.USER, verbose, name), directory_of(users), Policy())
        assert result.lines == (NO_SUCH_USER,)


@given(query_bytes, any_tables)
def test_invalid_query_lines_are_no_such_user(line, users):
    query = parse_query(line)
    if query.kind is Kind.USER and not is_valid_name(query.name):
        assert answer(query, directory_of(users), Policy()).lines == (NO_SUCH_USER,)


@given(names, st.booleans(), any_tables)
def test_unknown_names_are_no_such_user(name, verbose, users):
    if any(known.casefold() == name.casefold() for known in users):
        return
    result = answer(Query(Kind.USER, verbose, name), directory_of(users), Policy())
    assert result == Answer((NO_SUCH_USER,), "no-such-user")


@given(names, st.lists(nasty_text, max_size=4).map(tuple), st.booleans())
def test_known_names_answer_their_status(name, status, verbose):
    result = answer(Query(Kind.USER, verbose, name), directory_of({name: status}), Policy())
    assert result.outcome == "found"
    if verbose:
        expected = (f"Login: {name}", "Plan:", *status) if status else (f"Login: {name}", NO_PLAN)
    else:
        expected = status or (NO_PLAN,)
    assert result.lines == expected


@given(st.dictionaries(names, st.lists(nasty_text, max_size=3).map(tuple), min_size=1, max_size=8))
def test_list_has_one_line_per_user(users):
    lines = answer(Query(Kind.LIST), directory_of(users), Policy()).lines
    assert len(lines) == len(users)
    assert [line.split(" ", 1)[0] for line in lines] == sorted(users)


@given(st.dictionaries(names, st.lists(st.text(max_size=400), max_size=2).map(tuple), min_size=1, max_size=8))
def test_list_lines_are_never_wider_than_a_name_and_the_status_width(users):
    lines = answer(Query(Kind.LIST), directory_of(users), Policy()).lines
    for line, (name, status) in zip(lines, sorted(users.items())):
        assert len(line) <= max(LIST_NAME_WIDTH, len(name)) + 2 + LIST_STATUS_WIDTH
        if status and len(status[0]) <= LIST_STATUS_WIDTH:
            assert list_status(status) == status[0]


@given(query_bytes, any_tables)
def test_list_denied_never_lists(line, users):
    query = parse_query(line)
    result = answer(query, directory_of(users), Policy(list_users=False))
    if query.kind is Kind.LIST:
        assert result.lines == (LIST_DENIED,)
    else:
        assert LIST_DENIED not in result.lines


# forwarding on: the pure decision


LOOPBACK_ALLOWED = Policy(forwarding=True, forward_allow=frozenset({"127.0.0.1", "::1"}))
OPEN = Policy(forwarding=True)


@pytest.mark.parametrize(
    "line, policy, expected",
    [
        (b"alice@127.0.0.1:7979", LOOPBACK_ALLOWED, Hop("127.0.0.1", 7979, b"alice\r\n", True)),
        (b"/W alice@[::1]:7979", LOOPBACK_ALLOWED, Hop("::1", 7979, b"/W alice\r\n", True)),
        (b"@127.0.0.1", LOOPBACK_ALLOWED, Hop("127.0.0.1", 79, b"\r\n", True)),
        (
            b"alice@one.example:80@127.0.0.1",
            Policy(forwarding=True, forward_max_hops=2, forward_allow=frozenset({"127.0.0.1"})),
            Hop("127.0.0.1", 79, b"alice@one.example:80\r\n", True),
        ),
        (b"alice@Finger.Example.ORG.", OPEN, Hop("finger.example.org", 79, b"alice\r\n", False)),
        (b"alice@8.8.8.8", OPEN, Hop("8.8.8.8", 79, b"alice\r\n", False)),
        (
            b"alice@FINGER.example.org:7979",
            Policy(forwarding=True, forward_allow=frozenset({"finger.example.org"})),
            Hop("finger.example.org", 7979, b"alice\r\n", True),
        ),
    ],
)
def test_forward_hop(line, policy, expected):
    assert forward_hop(parse_query(line), policy) == expected


@pytest.mark.parametrize(
    "line, policy, text",
    [
        (b"alice@127.0.0.1", Policy(), FORWARD_DENIED),
        (b"alice@a@127.0.0.1", LOOPBACK_ALLOWED, "Forwarding denied: too many hops (at most 1)"),
        (b"alice@127.0.0.1", OPEN, FORWARD_NOT_ALLOWED),
        (b"alice@[::ffff:127.0.0.1]", OPEN, FORWARD_NOT_ALLOWED),
        (b"alice@10.1.2.3", OPEN, FORWARD_NOT_ALLOWED),
        (b"alice@finger.example.org:7979", OPEN, FORWARD_NOT_ALLOWED),
        (b"alice@finger.example.org", LOOPBACK_ALLOWED, FORWARD_NOT_ALLOWED),
        (b"alice@127.0.0.2", LOOPBACK_ALLOWED, FORWARD_NOT_ALLOWED),
        (b"$(id)@127.0.0.1", LOOPBACK_ALLOWED, FORWARD_BAD_QUERY),
        (b"alice\x1b[2J@127.0.0.1", LOOPBACK_ALLOWED, FORWARD_BAD_QUERY),
        (b"alice@", LOOPBACK_ALLOWED, FORWARD_BAD_QUERY),
        (b"alice@127.0.0.1:99999", LOOPBACK_ALLOWED, FORWARD_BAD_QUERY),
        (b"alice@0x7f.1", OPEN, FORWARD_BAD_QUERY),
        (b"alice@[fe80::1%\x1b[2J]:79@8.8.8.8", Policy(forwarding=True, forward_max_hops=2), FORWARD_BAD_QUERY),
    ],
)
def test_forward_refusals(line, policy, text):
    result = forward_hop(parse_query(line), policy)
    assert result == Answer((text,), "forward-denied")


def test_a_hop_goes_to_a_worker_and_a_refusal_is_answered_at_once(snapshot):
    assert answer_now(parse_query(b"alice@127.0.0.1:7979"), snapshot, LOOPBACK_ALLOWED) is None
    refusal = answer_now(parse_query(b"alice@a@127.0.0.1"), snapshot, LOOPBACK_ALLOWED)
    assert refusal is not None and refusal.outcome == "forward-denied"


def test_answer_hands_the_hop_to_the_relay(snapshot):
    query = parse_query(b"alice@127.0.0.1:7979")
    assert answer(query, snapshot, LOOPBACK_ALLOWED) == Answer((FORWARD_DENIED,), "forward-denied")
    relayed = answer(query, snapshot, LOOPBACK_ALLOWED, lambda hop, deadline: Answer((hop.host, str(hop.port)), "forwarded"))
    assert relayed == Answer(("127.0.0.1", "7979"), "forwarded")


policies = st.builds(
    Policy,
    forwarding=st.booleans(),
    forward_max_hops=st.integers(1, 4),
    forward_allow=st.frozensets(st.sampled_from(["127.0.0.1", "::1", "h", "finger.example.org"]), max_size=3),
)
FORWARD_HOSTS = ["h", "h:7979", "127.0.0.1", "[::1]:79", "8.8.8.8", ""]
FORWARD_HOSTS += ["x y", "\x1b", "[fe80::1%\x1b]:79", "fe80::1%eth0"]
forward_lines = st.one_of(
    st.binary(max_size=200).map(lambda data: data + b"@h"),
    st.lists(st.sampled_from(FORWARD_HOSTS), min_size=1, max_size=5).map(
        lambda hosts: ("alice@" + "@".join(hosts)).encode()
    ),
)


@given(forward_lines, policies)
def test_a_hop_is_one_safe_line_within_the_policy(line, policy):
    query = parse_query(line)
    result = forward_hop(query, policy)
    if isinstance(result, Answer):
        assert result.outcome == "forward-denied"
        return
    assert policy.forwarding and len(query.hosts) <= policy.forward_max_hops
    assert result.query.endswith(b"\r\n") and result.query.count(b"\n") == 1
    assert all(0x20 <= byte < 0x7F for byte in result.query[:-2])
    assert result.query.count(b"@") == len(query.hosts) - 1
    assert result.listed == (result.host in policy.forward_allow)
    assert result.listed or (not policy.forward_allow and result.port == 79)
