"""Sessions from utmp, last logins from lastlog, idle times from terminals, and finger's layout of them.

utmp files are built two ways: from the record layout here, and by
util-linux's ``utmpdump -r``, so the layout is checked against a tool that
knows the real one.  The readers are given what a wrong configuration can
point them at (a FIFO, /dev/zero, a directory, a cut or huge file) and
must answer at once, without sessions and with a reason.  The formatters
are pure and checked line by line, and with hypothesis: whatever bytes a
utmp holds, each formatted line stays one line once the reply path
escapes it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import in_zone
from fingerd.render import reply_bytes, visible
from fingerd.sources.sessions import (
    DEFAULT_WIDTHS,
    HALF_YEAR,
    LASTLOG_RECORD,
    USER_PROCESS,
    UTMP_LIMIT,
    UTMP_RECORD,
    LastLogin,
    ListWidths,
    Session,
    Terminal,
    format_idle,
    format_phone,
    format_time,
    is_terminal_name,
    last_login_lines,
    list_header,
    list_line,
    list_widths,
    login_lines,
    parse_lastlog_record,
    parse_utmp,
    read_last_login,
    read_utmp,
    session_lines,
    terminal,
    terminal_state,
)

DEAD_PROCESS = 8
LOGIN_PROCESS = 6
NOON = 1606737600.0  # Mon Nov 30 12:00:00 2020 UTC
EVIL_HOST = "evil\x1b[2J\nhost"


def utmp_record(
    user: bytes = b"alice",
    line: bytes = b"pts/3",
    host: bytes = b"",
    seconds: int = int(NOON),
    microseconds: int = 0,
    pid: int = 4242,
    kind: int = USER_PROCESS,
) -> bytes:
    """One glibc x86_64 utmp record."""
    return UTMP_RECORD.pack(kind, pid, line, line[-4:], user, host, 0, 0, 0, seconds, microseconds, 0, 0, 0, 0, b"")


def utmpdump_reverse(path: Path, entries: list[tuple[int, int, str, str, str, str]]) -> Path:
    """A utmp file written by ``utmpdump -r`` from (type, pid, line, user, host, ISO time) entries."""
    assert shutil.which("utmpdump"), "utmpdump (util-linux) is required: apt-get install util-linux"
    text = "".join(
        f"[{kind}] [{pid:05d}] [{line[-4:]:<4}] [{user:<8}] [{line:<12}] [{host:<20}] [0.0.0.0        ] [{when}]\n"
        for kind, pid, line, user, host, when in entries
    )
    with open(path, "wb") as output:
        subprocess.run(["utmpdump", "-r"], input=text.encode(), stdout=output, stderr=subprocess.PIPE, check=True)
    return path


def one_line_each(lines: list[str]) -> bool:
    """True when the reply path sends exactly these lines, none broken, none with a control character."""
    wire = reply_bytes(lines)
    sent = wire.decode("utf-8").split("\r\n")
    text = wire.replace(b"\r\n", b"")
    return len(sent) == len(lines) + 1 and all(0x20 <= byte < 0x7F or byte >= 0x80 for byte in text)


# parse_utmp


def test_sessions_are_the_user_process_records_with_a_user():
    data = b"".join([
        utmp_record(b"alice", b"pts/3", b"", int(NOON), 250000, pid=10),
        utmp_record(b"", b"pts/4", kind=USER_PROCESS),
        utmp_record(b"LOGIN", b"tty1", kind=LOGIN_PROCESS),
        utmp_record(b"bob", b"pts/5", kind=DEAD_PROCESS),
        utmp_record(b"reboot", b"~", kind=2),
        utmp_record(b"bob", b"pts/6", b"host.example", int(NOON) + 60, pid=11),
    ])
    sessions, truncated = parse_utmp(data)
    assert not truncated
    assert sessions == (
        Session("alice", "pts/3", "", NOON + 0.25, 10),
        Session("bob", "pts/6", "host.example", NOON + 60, 11),
    )


def test_fields_end_at_the_first_nul_and_keep_invalid_utf8_visible():
    data = utmp_record(b"caf\xe9", b"pts/1\0junk", b"h\xff\xfe\0rest")
    (session,), _ = parse_utmp(data)
    assert (session.tty, session.host) == ("pts/1", "h\\xff\\xfe")
    assert session.user == "caf\udce9" == os.fsdecode(b"caf\xe9"), "decoded as pwd decodes a login, to match it"


def test_control_characters_are_kept_as_text():
    (session,), _ = parse_utmp(utmp_record(host=EVIL_HOST.encode()))
    assert session.host == EVIL_HOST


def test_a_file_written_by_utmpdump_is_read(tmp_path):
    path = utmpdump_reverse(tmp_path / "utmp", [
        (USER_PROCESS, 101, "pts/0", "alice", "", "2020-11-30T22:10:05,000000+00:00"),
        (DEAD_PROCESS, 102, "pts/1", "", "", "2020-11-30T22:11:00,000000+00:00"),
        (LOGIN_PROCESS, 103, "tty1", "LOGIN", "", "2020-11-30T22:12:00,000000+00:00"),
        (USER_PROCESS, 104, "pts/2", "bob", "192.0.2.7", "2020-11-30T23:00:00,500000+00:00"),
    ])
    assert path.stat().st_size == 4 * UTMP_RECORD.size
    sessions, problem = read_utmp(str(path))
    assert problem is None
    assert sessions == (
        Session("alice", "pts/0", "", 1606774205.0, 101),
        Session("bob", "pts/2", "192.0.2.7", 1606777200.5, 104),
    )


def test_utmpdump_reads_the_records_built_here(tmp_path):
    path = tmp_path / "utmp"
    path.write_bytes(utmp_record(b"carol", b"pts/9", b"far.example", 1606774205, pid=777))
    assert shutil.which("utmpdump"), "utmpdump (util-linux) is required: apt-get install util-linux"
    dump = subprocess.run(["utmpdump", str(path)], capture_output=True, text=True, check=True).stdout
    fields = [field.strip() for field in dump.strip().strip("[]").split("] [")]
    assert fields[:6] == ["7", "00777", "ts/9", "carol", "pts/9", "far.example"]
    assert fields[7].startswith("2020-11-30T22:10:05")


@given(st.binary(max_size=3 * UTMP_RECORD.size + 10))
def test_any_bytes_parse_without_raising(data):
    sessions, truncated = parse_utmp(data)
    assert len(sessions) <= len(data) // UTMP_RECORD.size
    assert truncated == (len(data) % UTMP_RECORD.size != 0)


@given(
    st.lists(st.binary(min_size=UTMP_RECORD.size, max_size=UTMP_RECORD.size), max_size=4),
    st.integers(0, UTMP_RECORD.size - 1),
)
def test_whole_records_and_a_tail(records, tail):
    data = b"".join(records) + b"\x07" * tail
    sessions, truncated = parse_utmp(data)
    assert len(sessions) <= len(records)
    assert truncated == (tail > 0)
    assert parse_utmp(b"".join(records))[0] == sessions


@given(st.lists(st.binary(min_size=UTMP_RECORD.size, max_size=UTMP_RECORD.size), max_size=3))
def test_whatever_a_record_holds_formats_as_one_line_each(records):
    data = b"".join(
        utmp_record(user=record[:32] or b"x", line=record[32:64], host=record[64:320]) for record in records
    )
    sessions, _ = parse_utmp(data)
    for session in sessions:
        for show_hosts in (True, False):
            lines = session_lines(session, 4000, show_hosts, writable=False)
            lines.append(list_line(session.user, session.user, session, 4000, show_hosts, NOON))
            assert one_line_each(lines)
            assert all(visible(line) == line and "\t" not in line for line in lines)


# read_utmp: what a wrong path can hold


def test_a_truncated_file_gives_its_whole_records_and_says_so(tmp_path):
    path = tmp_path / "utmp"
    path.write_bytes(utmp_record(b"alice") + utmp_record(b"bob")[:100])
    sessions, problem = read_utmp(str(path))
    assert [session.user for session in sessions] == ["alice"]
    assert problem == "ends in a partial record (100 bytes): ignored"


def test_a_file_past_the_cap_gives_the_records_within_it(tmp_path):
    path = tmp_path / "utmp"
    path.write_bytes(b"".join(utmp_record(f"u{number}".encode()) for number in range(20)))
    cap = 10 * UTMP_RECORD.size + 100
    sessions, problem = read_utmp(str(path), cap)
    assert [session.user for session in sessions] == [f"u{number}" for number in range(10)]
    assert problem == f"larger than {cap} bytes: only its first 10 records are read"


def test_a_huge_file_is_read_only_up_to_the_default_cap(tmp_path):
    path = tmp_path / "utmp"
    with open(path, "wb") as huge:
        huge.write(utmp_record(b"alice"))
        huge.truncate(64 * 1024 * 1024)  # sparse: the rest reads as empty records
    started = time.monotonic()
    sessions, problem = read_utmp(str(path))
    assert time.monotonic() - started < 5
    assert [session.user for session in sessions] == ["alice"]
    assert problem is not None and f"larger than {UTMP_LIMIT} bytes" in problem


def test_exactly_the_cap_is_not_too_large(tmp_path):
    path = tmp_path / "utmp"
    path.write_bytes(utmp_record() * 3)
    sessions, problem = read_utmp(str(path), 3 * UTMP_RECORD.size)
    assert len(sessions) == 3 and problem is None


def test_a_missing_file_gives_no_sessions_and_a_reason(tmp_path):
    path = tmp_path / "absent"
    assert read_utmp(str(path)) == ((), "No such file or directory")


def test_an_empty_file_is_nobody_logged_in(tmp_path):
    path = tmp_path / "utmp"
    path.write_bytes(b"")
    assert read_utmp(str(path)) == ((), None)


def read_with_a_deadline(path: Path, seconds: float = 5.0):
    """read_utmp in a thread: a reader that blocks fails the test instead of hanging it."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(read_utmp(str(path))), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"read_utmp({path}) still blocked after {seconds}s"
    return result[0]


def test_a_fifo_is_refused_at_once(tmp_path):
    path = tmp_path / "utmp"
    os.mkfifo(path)
    assert read_with_a_deadline(path) == ((), "is a FIFO, not a regular file")


def test_a_symlink_to_dev_zero_is_refused(tmp_path):
    path = tmp_path / "utmp"
    path.symlink_to("/dev/zero")
    assert read_with_a_deadline(path) == ((), "is a character device, not a regular file")


def test_a_directory_is_refused(tmp_path):
    assert read_utmp(str(tmp_path)) == ((), "is a directory, not a regular file")


def test_a_symlink_to_a_regular_file_is_followed(tmp_path):
    real = tmp_path / "real-utmp"
    real.write_bytes(utmp_record(b"alice"))
    link = tmp_path / "utmp"
    link.symlink_to(real)
    sessions, problem = read_utmp(str(link))
    assert [session.user for session in sessions] == ["alice"] and problem is None


# lastlog


def test_a_lastlog_record():
    record = LASTLOG_RECORD.pack(1606774205, b"pts/7", b"remote.example")
    assert parse_lastlog_record(record) == LastLogin(1606774205.0, "pts/7", "remote.example")


def test_time_zero_is_never_and_a_short_record_is_nothing():
    assert parse_lastlog_record(LASTLOG_RECORD.pack(0, b"pts/7", b"x")) is None
    assert parse_lastlog_record(LASTLOG_RECORD.pack(5, b"pts/7", b"x")[:-1]) is None


@given(st.binary(max_size=2 * LASTLOG_RECORD.size))
def test_any_lastlog_bytes_parse_without_raising(data):
    last = parse_lastlog_record(data)
    if last is not None:
        assert one_line_each(last_login_lines(last, True, NOON))


def test_the_record_of_a_uid_is_at_uid_times_the_record_size(tmp_path):
    path = tmp_path / "lastlog"
    with open(path, "wb") as lastlog:
        lastlog.seek(1001 * LASTLOG_RECORD.size)
        lastlog.write(LASTLOG_RECORD.pack(1606774205, b"pts/7", b"remote.example"))
    assert read_last_login(str(path), 1001) == LastLogin(1606774205.0, "pts/7", "remote.example")
    assert read_last_login(str(path), 1000) is None  # a hole: never
    assert read_last_login(str(path), 1002) is None  # past the end
    assert read_last_login(str(path), -1) is None
    assert read_last_login(str(path), 2**62) is None


def test_an_odd_lastlog_is_never(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    for name in ("fifo", "zero", "absent", "."):
        assert read_last_login(str(tmp_path / name), 0) is None


# terminals


@pytest.fixture
def pty() -> Iterator[str]:
    """A real terminal: its name as utmp holds it (``pts/N``)."""
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave).removeprefix("/dev/")
    finally:
        os.close(slave)
        os.close(master)


def test_the_idle_time_of_a_real_terminal_is_its_access_time(pty):
    now = time.time()
    os.utime(f"/dev/{pty}", (now - 330, now - 10))
    assert terminal(pty, now).idle == pytest.approx(330, abs=0.01)
    assert terminal(pty, now - 400).idle == 0  # read "in the future": not idle


def test_mesg_is_the_group_write_bit(pty):
    os.chmod(f"/dev/{pty}", 0o620)
    state = terminal(pty, time.time())
    assert state is not None and state.writable
    os.chmod(f"/dev/{pty}", 0o600)
    state = terminal(pty, time.time())
    assert state is not None and not state.writable


def test_terminal_state_is_pure():
    info = os.stat_result((stat.S_IFCHR | 0o620, 0, 0, 1, 0, 5, 0, 1000, 900, 900))
    assert terminal_state(info, 1330) == Terminal(330, True)


@pytest.mark.parametrize("name", ["pts/3", "tty1", "ttyS0", "console", "pts/12"])
def test_plain_terminal_names(name):
    assert is_terminal_name(name)


@pytest.mark.parametrize(
    "name", ["", "../etc/passwd", "/dev/pts/1", "pts/../../etc", "pts/1/2", ":0", "pts/", "a b", "tty\n"]
)
def test_other_names_are_never_looked_up(name):
    assert not is_terminal_name(name)
    assert terminal(name, time.time()) is None


def test_only_a_character_device_counts(tmp_path):
    (tmp_path / "tty9").write_bytes(b"")
    (tmp_path / "tty8").symlink_to("/dev/zero")
    (tmp_path / "tty7").mkdir()
    os.mkfifo(tmp_path / "tty6")
    for name in ("tty9", "tty8", "tty7", "tty6", "tty5"):
        assert terminal(name, time.time(), dev=str(tmp_path)) is None
    assert terminal("stdin", time.time()) is None  # a symlink in /dev, to whatever the daemon has open


# formats


@pytest.mark.parametrize(
    ("seconds", "column", "words"),
    [
        (None, "     ", ""),
        (0, "     ", ""),
        (0.9, "     ", ""),
        (1, "     ", "1 second idle"),
        (59, "     ", "59 seconds idle"),
        (60, "    1", "1 minute idle"),
        (330, "    5", "5 minutes 30 seconds idle"),
        (3600, " 1:00", "1 hour idle"),
        (3930, " 1:05", "1 hour 5 minutes idle"),
        (7530, " 2:05", "2 hours 5 minutes idle"),
        (36000, "10:00", "10 hours idle"),
        (86400 + 61, "   1d", "1 day idle"),
        (3 * 86400 + 4 * 3600 + 59, "   3d", "3 days 4 hours idle"),
        (400 * 86400, " 400d", "400 days idle"),
        (10**9, "9999d", "11574 days 1 hour idle"),
    ],
)
def test_idle_in_both_forms(seconds, column, words):
    assert format_idle(seconds) == column
    assert format_idle(seconds, long=True) == words


@given(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)))
def test_the_idle_column_is_always_five_wide(seconds):
    assert len(format_idle(seconds)) == 5


def test_times_are_in_the_local_zone():
    with in_zone("UTC"):
        assert format_time(NOON, False) == "Mon Nov 30 12:00 (UTC)"
        assert format_time(NOON + 86400 * 2, True) == "Wed Dec  2 12:00 2020 (UTC)"
    with in_zone("Europe/Paris"):
        assert format_time(NOON, False) == "Mon Nov 30 13:00 (CET)"
        assert format_time(NOON - 86400 * 60, True) == "Thu Oct  1 14:00 2020 (CEST)"
    assert format_time(NOON, False, localtime=time.gmtime).startswith("Mon Nov 30 12:00 (")


def test_a_time_out_of_range_is_shown_as_a_number():
    assert format_time(1e300, True) == "(time 1e+300)"
    assert format_time(float("nan"), False) == "(time nan)"


ALICE = Session("alice", "pts/3", "", NOON, 100)
REMOTE = Session("alice", "pts/4", "host.example", NOON - 3600, 101)


def test_on_since_with_idle(utc):
    assert session_lines(ALICE, 330, True) == ["On since Mon Nov 30 12:00 (UTC) on pts/3   5 minutes 30 seconds idle"]


def test_on_since_not_idle(utc):
    assert session_lines(ALICE, 0, True) == ["On since Mon Nov 30 12:00 (UTC) on pts/3"]
    assert session_lines(ALICE, None, True) == ["On since Mon Nov 30 12:00 (UTC) on pts/3"]


def test_a_remote_session_puts_its_idle_time_on_a_line_of_its_own(utc):
    assert session_lines(REMOTE, 7530, True) == [
        "On since Mon Nov 30 11:00 (UTC) on pts/4 from host.example",
        "   2 hours 5 minutes idle",
    ]


def test_hosts_are_left_out_unless_shown(utc):
    assert session_lines(REMOTE, 7530, False) == ["On since Mon Nov 30 11:00 (UTC) on pts/4   2 hours 5 minutes idle"]


def test_messages_off(utc):
    assert session_lines(ALICE, 0, True, writable=False) == ["On since Mon Nov 30 12:00 (UTC) on pts/3 (messages off)"]
    assert session_lines(REMOTE, 330, True, writable=False) == [
        "On since Mon Nov 30 11:00 (UTC) on pts/4 from host.example",
        "   5 minutes 30 seconds idle",
        "     (messages off)",
    ]


def test_idle_times_line_up_across_a_users_terminals(utc):
    console = Session("alice", "tty1", "", NOON, 102)
    wide = Session("alice", "pts/10", "", NOON, 103)
    lines = login_lines([(console, Terminal(60, True)), (wide, Terminal(60, True))], True)
    assert lines == [
        "On since Mon Nov 30 12:00 (UTC) on tty1     1 minute idle",
        "On since Mon Nov 30 12:00 (UTC) on pts/10   1 minute idle",
    ]
    assert login_lines([(console, None)], True) == ["On since Mon Nov 30 12:00 (UTC) on tty1"]


def test_a_host_with_control_characters_stays_on_its_line(utc):
    evil = Session("alice", "pts/3", EVIL_HOST, NOON, 100)
    lines = session_lines(evil, 330, True)
    assert reply_bytes(lines) == (
        b"On since Mon Nov 30 12:00 (UTC) on pts/3 from evil^[[2J^Jhost\r\n   5 minutes 30 seconds idle\r\n"
    )
    line = list_line("alice", "Alice", evil, 330, True, NOON + 60)
    assert reply_bytes([line]) == b"alice     Alice      pts/3       5  Nov 30 12:00 (evil^[[2J^Jhost)\r\n"


def test_a_terminal_name_with_control_characters_keeps_the_columns(utc):
    odd = Session("alice", "p\x1b\tx", "", NOON, 100)
    plain = Session("alice", "pxyzw", "", NOON, 100)
    odd_line = list_line("alice", "Alice", odd, 330, True, NOON + 60)
    plain_line = list_line("alice", "Alice", plain, 330, True, NOON + 60)
    assert odd_line.index("Nov") == plain_line.index("Nov")
    assert "p^[^Ix" in odd_line and one_line_each([odd_line])


def test_last_login(utc):
    last = LastLogin(NOON, "pts/7", "remote.example")
    assert last_login_lines(last, True, NOON + 3600) == [
        "Last login Mon Nov 30 12:00 (UTC) on pts/7 from remote.example"
    ]
    assert last_login_lines(last, False, NOON + 3600) == ["Last login Mon Nov 30 12:00 (UTC) on pts/7"]
    assert last_login_lines(last, False, NOON + HALF_YEAR) == ["Last login Mon Nov 30 12:00 2020 (UTC) on pts/7"]
    assert last_login_lines(last, False, NOON + HALF_YEAR - 1) == ["Last login Mon Nov 30 12:00 (UTC) on pts/7"]
    assert last_login_lines(None, True, NOON) == ["Never logged in."]


# the list


def test_the_header_at_the_default_widths():
    assert list_header() == "Login     Name       Tty      Idle  Login Time   Office     Office Phone"
    assert list_widths([]) == DEFAULT_WIDTHS == ListWidths(9, 9)


def test_widths_fit_the_longest_entry_and_the_screen():
    assert list_widths([("fdtexpalice", "Alice Liddell")]) == ListWidths(12, 14)
    assert list_widths([("alice", "A" * 40)]) == ListWidths(8, 22)
    assert list_header(ListWidths(12, 14)) == (
        "Login        Name            Tty      Idle  Login Time   Office     Office Phone"
    )


def test_list_lines(utc):
    now = NOON + 3600
    assert list_line("alice", "Alice Liddell", ALICE, 330, True, now, office="Room 12", office_phone="5551234") == (
        "alice     Alice Lid  pts/3       5  Nov 30 12:00 Room 12    555-1234"
    )
    assert list_line("alice", "Alice", REMOTE, 7530, True, now, writable=False) == (
        "alice     Alice     *pts/4    2:05  Nov 30 11:00 (host.example)"
    )
    assert list_line("alice", "Alice", REMOTE, 7530, False, now, "", "5551234") == (
        "alice     Alice      pts/4    2:05  Nov 30 11:00            555-1234"
    )
    last = LastLogin(NOON - HALF_YEAR, "pts/7", "remote.example")
    assert list_line("alice", "Alice", last, None, False, now, office="Room 12") == (
        "alice     Alice      pts/7       *  Jun  1  2020 Room 12"
    )
    assert list_line("alice", "Alice", None, None, True, now) == "alice     Alice       *     *  No logins"


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        ("15551234567", "+1-555-123-4567"),
        ("5551234567", "555-123-4567"),
        ("5551234", "555-1234"),
        ("51234", "x5-1234"),
        ("1234", "x1234"),
        ("123", "123"),
        ("555-1234", "555-1234"),
        ("", ""),
        ("１２３４", "１２３４"),
    ],
)
def test_phone_numbers_as_finger_shows_them(number, shown):
    assert format_phone(number) == shown
