"""Unit and property tests for fingerd.users.statusfile.parse_status_file."""

from __future__ import annotations

import sys

from hypothesis import given
from hypothesis import strategies as st

from fingerd.protocol import NAME_PATTERN
from fingerd.sources.base import text_lines
from fingerd.users.statusfile import MAX_STATUS_BYTES, Problem, lines_of, parse_status_file, truncated_marker


def users_of(text: str) -> dict[str, tuple[str, ...]]:
    return dict(parse_status_file(text.encode()).users)


def problem_lines(data: bytes) -> list[int]:
    return [problem.line for problem in parse_status_file(data).problems]


# the basic format


def test_simple_entries_in_file_order():
    result = parse_status_file(b"alice: Writing the finger daemon\nbob: Out to lunch\n")
    assert result.users == {"alice": ("Writing the finger daemon",), "bob": ("Out to lunch",)}
    assert list(result.users) == ["alice", "bob"]
    assert result.problems == []
    assert result.invalid_utf8 is False


def test_empty_file():
    result = parse_status_file(b"")
    assert result.users == {}
    assert result.problems == []


def test_both_sides_are_stripped():
    assert users_of("alice \t:   hello there \t\n") == {"alice": ("hello there",)}


def test_split_at_the_first_colon():
    assert users_of("alice: time: 12:30\n") == {"alice": ("time: 12:30",)}


def test_empty_status():
    assert users_of("alice:\n") == {"alice": ()}


def test_last_line_without_newline():
    assert users_of("alice: a\nbob: b") == {"alice": ("a",), "bob": ("b",)}


def test_comments_and_blank_lines_ignored():
    text = "# header\n\nalice: a\n# between\n\n\nbob: b\n#bob: not me\n"
    result = parse_status_file(text.encode())
    assert result.users == {"alice": ("a",), "bob": ("b",)}
    assert result.problems == []


def test_indented_hash_is_a_continuation_not_a_comment():
    assert users_of("alice: a\n # not a comment\n") == {"alice": ("a", "# not a comment")}


def test_byte_order_mark_is_ignored():
    assert users_of("\ufeffalice: a\n") == {"alice": ("a",)}


# line ends


def test_crlf_line_ends_drop_the_cr():
    assert users_of("alice: a\r\nbob: b\r\n b2\r\n") == {"alice": ("a",), "bob": ("b", "b2")}


def test_only_one_trailing_cr_is_dropped():
    assert users_of("alice:\n x\r\r\n") == {"alice": ("x\r",)}


def test_inner_cr_is_not_a_line_end():
    assert users_of("alice: a\rb\n") == {"alice": ("a\rb",)}


def test_form_feed_does_not_split():
    assert users_of("alice: page one\x0cpage two\n") == {"alice": ("page one\x0cpage two",)}


def test_unicode_separators_do_not_split():
    text = "alice: one\u2028two\u2029three\x85four\x1cfive\x0bsix\n"
    assert users_of(text) == {"alice": ("one\u2028two\u2029three\x85four\x1cfive\x0bsix",)}


def test_separators_in_continuation_lines_do_not_split():
    assert users_of("alice: a\n x\u2028y\x0cz\n") == {"alice": ("a", "x\u2028y\x0cz")}


# continuation lines


def test_continuation_removes_exactly_one_space():
    text = "carol:\n first line of a plan\n   indented art\n"
    assert users_of(text) == {"carol": ("first line of a plan", "  indented art")}


def test_continuation_removes_exactly_one_tab():
    assert users_of("carol: top\n\tone\n\t\ttwo\n \tmixed\n") == {"carol": ("top", "one", "\ttwo", "\tmixed")}


def test_continuation_keeps_trailing_spaces_and_art():
    text = "carol: art\n  /\\_/\\  \n ( o.o ) \n  > ^ <\n"
    assert users_of(text) == {"carol": ("art", " /\\_/\\  ", "( o.o ) ", " > ^ <")}


def test_single_space_line_is_an_empty_plan_line():
    assert users_of("carol: a\n \n b\n") == {"carol": ("a", "", "b")}


def test_empty_lines_inside_a_plan_are_ignored():
    assert users_of("carol: a\n\n b\n") == {"carol": ("a", "b")}


def test_comment_inside_a_plan_is_skipped():
    assert users_of("carol: a\n# note\n b\n") == {"carol": ("a", "b")}


def test_empty_first_and_last_plan_lines_are_trimmed():
    assert users_of("carol:\n \n  \n  x\n \n\t\n") == {"carol": (" x",)}


def test_whitespace_only_plan_is_empty():
    assert users_of("carol:   \n  \n \t \n") == {"carol": ()}


def test_continuation_attaches_to_the_latest_user():
    assert users_of("alice: a\n a2\nbob: b\n b2\n") == {"alice": ("a", "a2"), "bob": ("b", "b2")}


def test_continuation_before_any_user_is_reported():
    result = parse_status_file(b"# top\n orphan\nalice: a\n")
    assert result.users == {"alice": ("a",)}
    assert [problem.line for problem in result.problems] == [2]
    assert "continuation" in result.problems[0].message


# malformed lines


def test_line_without_colon_is_reported_and_skipped():
    result = parse_status_file(b"alice: a\njust some words\nbob: b\n")
    assert result.users == {"alice": ("a",), "bob": ("b",)}
    assert [problem.line for problem in result.problems] == [2]
    assert "colon" in result.problems[0].message


def test_invalid_names_are_reported_and_skipped():
    text = "-l: option\n../../etc/passwd: path\n: empty\nx" + "y" * 32 + ": long\nok: fine\n$(id): shell\n"
    result = parse_status_file(text.encode())
    assert result.users == {"ok": ("fine",)}
    assert [problem.line for problem in result.problems] == [1, 2, 3, 4, 6]


def test_malformed_lines_report_correct_numbers():
    data = b"# c\n\nalice: a\nbroken\n\n# c\nbob: b\n: nobody\r\ncarol: c\n"
    assert problem_lines(data) == [4, 8]
    assert set(parse_status_file(data).users) == {"alice", "bob", "carol"}


def test_line_numbers_count_crlf_lines():
    assert problem_lines(b"alice: a\r\n\r\nbroken\r\n") == [3]


def test_line_numbers_ignore_the_byte_order_mark():
    assert problem_lines("\ufeffbroken\nalice: a\n".encode()) == [1]


def test_line_numbers_count_lines_split_by_separators_as_one():
    assert problem_lines("alice: a\u2028b\x0cc\nbroken\n".encode()) == [2]


def test_continuation_of_a_malformed_entry_does_not_join_the_previous_user():
    result = parse_status_file(b"alice: a\n-bad: x\n stray\n")
    assert result.users == {"alice": ("a",)}
    assert [problem.line for problem in result.problems] == [2, 3]


def test_continuation_after_a_line_without_colon_is_skipped():
    result = parse_status_file(b"alice: a\nbroken\n stray\n")
    assert result.users == {"alice": ("a",)}
    assert [problem.line for problem in result.problems] == [2, 3]


def test_problem_str_names_the_line():
    assert str(Problem(7, "no colon")) == "line 7: no colon"


def test_problem_message_does_not_carry_a_huge_name():
    result = parse_status_file(b"-" * 5000 + b": x\n")
    assert len(result.problems[0].message) < 200


# duplicates


def test_duplicate_name_later_entry_wins():
    result = parse_status_file(b"alice: first\n more\nbob: b\nalice: second\n")
    assert result.users == {"alice": ("second",), "bob": ("b",)}
    assert [problem.line for problem in result.problems] == [4]
    assert "alice" in result.problems[0].message


def test_names_differing_in_case_are_distinct():
    result = parse_status_file(b"alice: lower\nAlice: upper\n")
    assert result.users == {"alice": ("lower",), "Alice": ("upper",)}
    assert result.problems == []


# invalid UTF-8


def test_invalid_utf8_is_replaced_and_flagged():
    result = parse_status_file(b"alice: caf\xe9\nbob: fine\n")
    assert result.users == {"alice": ("caf\ufffd",), "bob": ("fine",)}
    assert result.invalid_utf8 is True


def test_valid_utf8_is_not_flagged():
    result = parse_status_file("alice: caf\u00e9 \u65e5\u672c\n".encode())
    assert result.users == {"alice": ("caf\u00e9 \u65e5\u672c",)}
    assert result.invalid_utf8 is False


def test_invalid_utf8_in_a_name_skips_only_that_line():
    result = parse_status_file(b"al\xffice: x\nbob: b\n")
    assert result.users == {"bob": ("b",)}
    assert result.invalid_utf8 is True
    assert [problem.line for problem in result.problems] == [1]


def test_surrogate_bytes_are_invalid():
    result = parse_status_file(b"alice: \xed\xa0\x80\n")
    assert result.invalid_utf8 is True
    assert "\ufffd" in result.users["alice"][0]


# size: one status is at most MAX_STATUS_BYTES, then a marker line

MARKER = truncated_marker(MAX_STATUS_BYTES)


def served_size(lines) -> int:
    return len("\n".join(lines).encode("utf-8"))


def test_the_cap_is_that_of_a_plan_and_so_is_the_marker():
    assert MAX_STATUS_BYTES == 64 * 1024
    assert MARKER == "[truncated at 64 KiB]"
    assert MARKER == text_lines(b"x" * (MAX_STATUS_BYTES + 1), MAX_STATUS_BYTES)[-1]


def test_a_huge_line_is_cut_at_the_cap_and_the_rest_of_the_file_loads():
    data = b"alice: a\nbig: " + b"x" * 10_000_000 + b"\n more\n\nbob: b\n"
    result = parse_status_file(data)
    assert result.users == {"alice": ("a",), "big": ("x" * MAX_STATUS_BYTES, MARKER), "bob": ("b",)}
    assert result.problems == [Problem(2, "status of big longer than 64 KiB; cut here")]


def test_a_status_of_exactly_the_cap_is_kept_whole():
    status = "y" * MAX_STATUS_BYTES
    result = parse_status_file(f"alice: {status}\n".encode())
    assert result.users == {"alice": (status,)}
    assert result.problems == []


def test_one_byte_over_the_cap_is_cut():
    result = parse_status_file(b"alice: " + b"y" * (MAX_STATUS_BYTES + 1) + b"\n")
    assert result.users == {"alice": ("y" * MAX_STATUS_BYTES, MARKER)}
    assert problem_lines(b"alice: " + b"y" * (MAX_STATUS_BYTES + 1)) == [1]


def test_the_cap_counts_bytes_and_never_splits_a_character():
    status = "x" + "\u00e9" * MAX_STATUS_BYTES
    (kept, marker) = parse_status_file(f"alice: {status}\n".encode()).users["alice"]
    assert marker == MARKER
    assert kept == "x" + "\u00e9" * ((MAX_STATUS_BYTES - 1) // 2)
    assert len(kept.encode()) == MAX_STATUS_BYTES - 1


def test_the_cap_counts_the_newlines_between_plan_lines():
    line = "z" * 1023
    plan = "".join(f" {line}\n" for _ in range(200))
    status = parse_status_file(f"carol:\n{plan}".encode()).users["carol"]
    assert status == (line,) * 64 + (MARKER,)
    assert served_size(status[:-1]) == MAX_STATUS_BYTES - 1


def test_a_plan_line_that_crosses_the_cap_is_cut_inside_it():
    plan = " " + "p" * 60000 + "\n " + "q" * 10000 + "\n " + "r" * 10 + "\n"
    status = parse_status_file(f"carol:\n{plan}".encode()).users["carol"]
    assert status == ("p" * 60000, "q" * (MAX_STATUS_BYTES - 60001), MARKER)


def test_a_cut_is_reported_once_on_the_line_that_passed_the_cap():
    plan = "".join(f" {'w' * 1000}\n" for _ in range(300))
    data = f"alice: a\ncarol: top\n{plan}bob: b\n".encode()
    result = parse_status_file(data)
    assert [str(problem) for problem in result.problems] == ["line 68: status of carol longer than 64 KiB; cut here"]
    assert result.users["alice"] == ("a",) and result.users["bob"] == ("b",)
    assert served_size(result.users["carol"][:-1]) <= MAX_STATUS_BYTES


def test_blank_lines_do_not_count_against_the_cap_when_they_are_dropped():
    data = b"carol: top\n" + b" \t\n" * (MAX_STATUS_BYTES // 2) + b"bob: b\n"
    result = parse_status_file(data)
    assert result.users == {"carol": ("top",), "bob": ("b",)}
    assert result.problems == []


def test_blank_lines_that_reach_the_cap_are_dropped_with_the_rest():
    data = b"carol: top\n" + b" \n" * MAX_STATUS_BYTES + b" bottom\n"
    assert parse_status_file(data).users == {"carol": ("top", MARKER)}


def test_a_later_entry_within_the_cap_wins_over_a_cut_one():
    data = b"alice: " + b"x" * (MAX_STATUS_BYTES + 5) + b"\nalice: short\n"
    result = parse_status_file(data)
    assert result.users == {"alice": ("short",)}
    assert problem_lines(data) == [1, 2]


def test_the_limit_can_be_given():
    result = parse_status_file(b"alice: 0123456789\n", limit=4)
    assert result.users == {"alice": ("0123", "[truncated at 4 bytes]")}
    assert str(result.problems[0]) == "line 1: status of alice longer than 4 bytes; cut here"


# properties

line_text = st.characters(exclude_categories=("Cs",), exclude_characters="\n\r")

status_file_lines = st.lists(
    st.one_of(
        st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}: [^\n]*\Z"),
        st.text().map(lambda text: " " + text),
        st.text().map(lambda text: "\t" + text),
        st.text().map(lambda text: "#" + text),
        st.sampled_from(["", "\r", " ", "\t", "  ", "\u2028", "\x0c", "\ufeff"]),
        st.text(),
    )
).map(lambda lines: "\n".join(lines).encode("utf-8"))

status_file_bytes = st.one_of(st.binary(), status_file_lines, status_file_lines.map(lambda data: data + b"\xff\r\n"))


@given(st.text(alphabet="ab\n\r"), st.integers(min_value=1, max_value=8))
def test_lines_split_a_piece_at_a_time_are_the_lines_split_at_once(text, piece):
    assert list(lines_of(text, piece)) == text.split("\n")


def test_a_file_larger_than_a_piece_parses_as_one_split_at_once():
    data = "".join(f"user{number}: status {number}\n continued\n" for number in range(20_000)).encode()
    assert len(data) > 4 * (1 << 16)
    users = parse_status_file(data).users
    assert len(users) == 20_000
    assert users["user0"] == ("status 0", "continued") and users["user19999"] == ("status 19999", "continued")


@given(status_file_bytes)
def test_parse_never_raises_and_names_are_valid(data):
    result = parse_status_file(data)
    assert all(NAME_PATTERN.fullmatch(name) for name in result.users)


@given(status_file_bytes)
def test_status_lines_hold_no_newline(data):
    for status in parse_status_file(data).users.values():
        assert isinstance(status, tuple)
        assert all(isinstance(line, str) and "\n" not in line for line in status)


@given(status_file_bytes)
def test_statuses_have_no_blank_first_or_last_line(data):
    for status in parse_status_file(data).users.values():
        if status:
            assert status[0].strip()
            assert status[-1].strip()


@given(status_file_bytes)
def test_problem_line_numbers_are_within_the_file(data):
    result = parse_status_file(data)
    line_count = data.count(b"\n") + 1
    numbers = [problem.line for problem in result.problems]
    assert all(1 <= number <= line_count for number in numbers)
    assert numbers == sorted(numbers)


@given(st.binary())
def test_invalid_utf8_flag_is_exact(data):
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert parse_status_file(data).invalid_utf8 is not valid


@given(
    st.dictionaries(
        st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\Z"),
        st.text(alphabet=line_text, min_size=1).filter(lambda status: status == status.strip()),
        max_size=10,
    )
)
def test_written_entries_read_back(entries):
    data = "".join(f"{name}: {status}\n" for name, status in entries.items()).encode()
    result = parse_status_file(data)
    assert result.users == {name: (status,) for name, status in entries.items()}
    assert result.problems == []


@given(st.lists(st.text(alphabet=line_text), min_size=1, max_size=8))
def test_plans_keep_their_lines(plan):
    data = ("carol: top\n" + "".join(f" {line}\n" for line in plan) + " end\n").encode()
    assert parse_status_file(data).users["carol"] == ("top", *plan, "end")


@st.composite
def files_and_limits(draw):
    """A file, and a limit that is often exactly a status's size, or one byte either side."""
    data = draw(status_file_bytes)
    sizes = [served_size(status) for status in parse_status_file(data, sys.maxsize).users.values()]
    near = sorted({max(0, size + delta) for size in sizes for delta in (-1, 0, 1)})
    small = st.integers(min_value=0, max_value=120)
    return data, draw(st.one_of(small, st.sampled_from(near)) if near else small)


@given(files_and_limits())
def test_no_status_exceeds_the_cap_plus_the_marker(case):
    data, limit = case
    marker = truncated_marker(limit)
    for status in parse_status_file(data, limit).users.values():
        kept = status[:-1] if status and status[-1] == marker else status
        assert served_size(kept) <= limit
        assert served_size(status) <= limit + len(marker.encode()) + 1


@given(files_and_limits())
def test_statuses_within_the_cap_are_unchanged(case):
    data, limit = case
    whole = parse_status_file(data, sys.maxsize)
    cut = parse_status_file(data, limit)
    assert cut.users.keys() == whole.users.keys()
    for name, status in whole.users.items():
        if served_size(status) <= limit:
            assert cut.users[name] == status
    cut_problems = [problem for problem in cut.problems if problem.message.endswith("; cut here")]
    assert [problem for problem in cut.problems if problem not in cut_problems] == whole.problems
    assert [problem.line for problem in cut.problems] == sorted(problem.line for problem in cut.problems)


@given(files_and_limits())
def test_a_cut_status_is_the_start_of_the_whole_one_then_the_marker(case):
    data, limit = case
    whole = parse_status_file(data, sys.maxsize)
    for name, status in parse_status_file(data, limit).users.items():
        if served_size(whole.users[name]) <= limit:
            continue
        *kept, marker = status
        assert marker == truncated_marker(limit)
        if kept:
            *whole_lines, last = kept
            assert tuple(whole_lines) == whole.users[name][: len(whole_lines)]
            assert whole.users[name][len(whole_lines)].startswith(last)
            assert kept[0].strip() and last.strip()
