"""The sources' pure parts and the directory's order, in-process.

Layouts and decoding are pure functions (tested directly and with
hypothesis); the directory is tested with the real file and command sources.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.finger.answer import LOOKUP_FAILED, NO_SUCH_USER, Policy, answer, answer_now
from fingerd.protocol import parse_query
from fingerd.render import reply_bytes
from fingerd.sources.base import NO_PLAN, status_record, text_lines
from fingerd.sources.command import CommandSource
from fingerd.sources.directory import Directory, Lookup
from fingerd.sources.file import FileSource
from fingerd.sources.home_files import read_home_file
from fingerd.sources.passwd import Account, HomeFiles, PasswdSource, account_reply, is_listed
from fingerd.users.table import UserTable

ALICE = Account("alice", 1001, "& Liddell,Room 1,555-1234,555-9999,other", "/home/alice", "/bin/bash")


# text_lines


def test_text_lines_splits_on_lf_and_drops_cr_and_trailing_blank_lines():
    assert text_lines(b"one\r\ntwo\n\n  \n", 100) == ("one", "two")
    assert text_lines(b"  indented\n\ttab", 100) == ("  indented", "\ttab")


def test_text_lines_cuts_with_a_visible_marker():
    assert text_lines(b"x" * 2049, 2048) == ("x" * 2048, "[truncated at 2 KiB]")
    assert text_lines(b"x" * 2048, 2048) == ("x" * 2048,)


def test_invalid_utf8_costs_only_itself():
    assert text_lines(b"caf\xc3\xa9 \xff ok", 100) == ("café \\xff ok",)


@given(st.binary(max_size=3000), st.integers(min_value=1024, max_value=2048))
def test_text_lines_is_total_and_bounded(data, limit):
    lines = text_lines(data, limit)
    assert sum(len(line) for line in lines) <= 4 * limit + 40
    reply_bytes(lines).decode("utf-8")


# the passwd layout


def test_short_layout_has_the_classic_fields_and_the_plan():
    reply = account_reply(ALICE, HomeFiles(plan=("Writing fingerd",), project=("p",), pgpkey=("k",)), verbose=False)
    assert reply[0].startswith("Login: alice") and reply[0].endswith("Name: Alice Liddell")
    assert reply[1].startswith("Directory: /home/alice") and reply[1].endswith("Shell: /bin/bash")
    assert reply[2:] == ("Plan:", "Writing fingerd")


def test_verbose_layout_adds_office_project_and_key_in_order():
    files = HomeFiles(plan=("plan",), project=("Project line", "more"), pgpkey=("-----BEGIN", "-----END"))
    reply = account_reply(ALICE, files, verbose=True)
    assert reply[2].startswith("Office: Room 1, 555-1234") and reply[2].endswith("Home Phone: 555-9999")
    assert reply[3:] == ("Project: Project line", "more", "Plan:", "plan", "PGP key:", "-----BEGIN", "-----END")


def test_no_plan_and_no_gecos():
    bare = Account("bob", 1002, "", "/home/bob", "/bin/sh")
    assert account_reply(bare, HomeFiles(), verbose=True) == (
        "Login: bob                              Name:",
        "Directory: /home/bob                    Shell: /bin/sh",
        NO_PLAN,
    )


def test_gecos_non_ascii_and_undecodable_bytes():
    zoe = Account("zoe", 1003, "Zoë Ünal,,,", "/home/zoe", "/bin/sh")
    assert zoe.real_name() == "Zoë Ünal"
    raw = Account("raw", 1004, b"Bad \xff Name".decode("utf-8", "surrogateescape"), "/home/raw", "/bin/sh")
    assert raw.real_name() == "Bad \\xff Name"
    reply_bytes(account_reply(raw, HomeFiles(), verbose=True)).decode("utf-8")


@given(st.text(max_size=80), st.text(alphabet="abc&", min_size=1, max_size=8))
def test_any_gecos_gives_a_wire_safe_reply(gecos, login):
    account = Account(login, 2000, gecos, "/home/x", "/bin/sh")
    data = reply_bytes(account_reply(account, HomeFiles(plan=(gecos,)), verbose=True))
    assert b"\x1b" not in data and data.count(b"\n") == data.count(b"\r\n")


def test_which_accounts_are_listed():
    assert is_listed(ALICE, 1000, ())
    assert not is_listed(ALICE, 1002, ())
    assert not is_listed(ALICE, 1000, ("alice",))
    assert not is_listed(Account("nobody", 65534, "", "/", "/bin/sh"), 1000, ())
    for shell in ("/usr/sbin/nologin", "/bin/false", "/sbin/nologin"):
        assert not is_listed(Account("svc", 1005, "", "/", shell), 1000, ())


# home files


def test_home_file_must_be_a_regular_file_owned_by_the_account(tmp_path):
    uid = os.geteuid()
    (tmp_path / "plan").write_bytes(b"mine")
    (tmp_path / "link").symlink_to(tmp_path / "plan")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    assert read_home_file(str(tmp_path), "plan", uid, 100) == b"mine"
    assert read_home_file(str(tmp_path), "plan", uid + 1, 100) is None
    assert read_home_file(str(tmp_path), "link", uid, 100) is None
    assert read_home_file(str(tmp_path), "missing", uid, 100) is None
    started = time.monotonic()
    assert read_home_file(str(tmp_path), "fifo", uid, 100) is None
    assert time.monotonic() - started < 5, "a FIFO must not block the read"
    assert read_home_file(str(tmp_path), "dir", uid, 100) is None
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)


def test_home_file_is_read_only_up_to_the_limit(tmp_path):
    (tmp_path / "big").write_bytes(b"y" * 300_000)
    assert read_home_file(str(tmp_path), "big", os.geteuid(), 1000) == b"y" * 1001


# the directory


def assert_gone(pid: int, message: str, limit: float = 5.0) -> None:
    """Wait until ``pid`` has exited (gone, or a zombie nobody reaped yet)."""
    deadline = time.monotonic() + limit
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def soon() -> float:
    return time.monotonic() + 10


def file_source(users: dict) -> tuple[FileSource, UserTable]:
    table = UserTable()
    table.replace(users)
    return FileSource(table), table


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_first_source_that_knows_the_name_answers(tmp_path):
    files, table = file_source({"alice": ("from the file",)})
    echo = CommandSource(["/bin/echo", "from the command:"], timeout=5)
    directory = Directory([files, echo], table)
    assert directory.lookup("alice").record.status == ("from the file",)
    assert directory.lookup("bob").record.status == ("from the command: bob",)
    directory = Directory([echo, files], table)
    assert directory.lookup("alice").record.status == ("from the command: alice",)


def test_a_failing_source_is_skipped_and_named_only_when_nobody_knows(tmp_path):
    files, table = file_source({"alice": ("file",)})
    slow = CommandSource([script(tmp_path, "slow", "sleep 20")], timeout=0.3)
    directory = Directory([slow, files], table)
    assert directory.lookup("alice").record.status == ("file",)
    found = directory.lookup("bob")
    assert found.record is None and found.failed == ("command",)
    assert answer(parse_query(b"bob"), directory, Policy()).lines == (LOOKUP_FAILED,)


def test_a_command_that_knows_nobody_falls_through(tmp_path):
    files, table = file_source({})
    directory = Directory([CommandSource(["/bin/false"], timeout=5), files], table)
    assert answer(parse_query(b"bob"), directory, Policy()).lines == (NO_SUCH_USER,)
    empty = Directory([CommandSource([script(tmp_path, "quiet", "exit 0")], timeout=5)], table)
    assert empty.lookup("bob").record is None


def test_answers_from_memory_only_until_a_blocking_source_is_needed():
    files, table = file_source({"alice": ("hi",)})
    echo = CommandSource(["/bin/echo"], timeout=5)
    directory = Directory([files, echo], table)
    assert answer_now(parse_query(b"alice"), directory, Policy()).lines == ("hi",)
    assert answer_now(parse_query(b"bob"), directory, Policy()) is None
    assert answer_now(parse_query(b""), directory, Policy()) is None
    assert answer_now(parse_query(b"-l"), directory, Policy()).lines == (NO_SUCH_USER,)
    assert answer_now(parse_query(b""), Directory([files], table), Policy()).lines == ("alice             hi",)


def test_listing_merges_listing_sources_first_one_wins(tmp_path):
    files, table = file_source({"alice": ("file alice",), "zed": ("z",)})
    other, _ = file_source({"alice": ("other alice",), "bob": ("other bob",)})
    directory = Directory([files, CommandSource(["/bin/echo"], timeout=5), other], table)
    assert directory.listing() == [("alice", ("file alice",)), ("bob", ("other bob",)), ("zed", ("z",))]


def test_invalid_names_never_reach_a_command(tmp_path):
    calls = tmp_path / "calls"
    record = CommandSource([script(tmp_path, "record", f'echo "$1" >> {calls}; echo seen')], timeout=5)
    files, table = file_source({})
    directory = Directory([record], table)
    for name in ("-l", "--help", "$(id)", "a b", "../x", ""):
        assert directory.lookup(name).record is None
    assert not calls.exists()
    assert directory.lookup("ok.name").record == status_record("ok.name", ("seen",))
    assert calls.read_text() == "ok.name\n"


def test_command_runs_with_a_clean_environment_and_no_input(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "leak")
    env = CommandSource([script(tmp_path, "env", "env | sort; cat; pwd")], timeout=5)
    status = env.lookup("alice", soon()).status
    names = {line.split("=", 1)[0] for line in status if "=" in line}
    assert "SECRET_TOKEN" not in names and names <= {"PATH", "LANG", "PWD", "SHLVL", "_"}
    assert status[-1] == "/"


def test_command_output_is_capped_and_the_program_killed(tmp_path):
    marker = tmp_path / "yes-pid"
    endless = CommandSource([script(tmp_path, "endless", f"echo $$ > {marker}; exec yes")], timeout=5)
    status = endless.lookup("alice", soon()).status
    assert status[-1] == "[truncated at 64 KiB]"
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_command_timeout_kills_the_whole_group(tmp_path):
    marker = tmp_path / "child-pid"
    hang = CommandSource([script(tmp_path, "hang", f"sleep 30 & echo $! > {marker}; wait")], timeout=0.5)
    with pytest.raises(Exception, match="did not finish"):
        hang.lookup("alice", soon())
    assert_gone(int(marker.read_text()), "the grandchild outlived the timeout")


def test_grandchildren_left_running_are_killed_too(tmp_path):
    marker = tmp_path / "bg-pid"
    quick = CommandSource([script(tmp_path, "bg", f"sleep 97 >/dev/null 2>&1 & echo $! > {marker}; echo hi")], timeout=5)
    assert quick.lookup("alice", soon()).status == ("hi",)
    assert_gone(int(marker.read_text()), "the background child outlived the lookup")


def test_one_deadline_for_the_whole_lookup(tmp_path):
    """Once the deadline has passed, the sources after the slow one are not asked at all."""
    files, table = file_source({})
    later = tmp_path / "later-ran"
    slow = CommandSource([script(tmp_path, "slow", "sleep 20")], timeout=5)
    second = CommandSource([script(tmp_path, "second", f"touch {later}; echo second")], timeout=5)
    directory = Directory([slow, second], table)
    found = directory.lookup("bob", deadline=time.monotonic() + 0.5)
    assert found == Lookup(None, ("command", "command"))
    assert not later.exists()


def test_a_hidden_account_ends_the_lookup():
    """passwd hides root (a system account); the command after it must not answer for it."""
    files, table = file_source({})
    accounts = PasswdSource(min_uid=1000)
    accounts.start()
    try:
        directory = Directory([accounts, CommandSource(["/bin/echo", "leaked"], timeout=5)], table)
        assert directory.lookup("root") == Lookup(None)
        assert directory.lookup("zz-no-such-account").record.status == ("leaked zz-no-such-account",)
    finally:
        accounts.stop(time.monotonic() + 1)
