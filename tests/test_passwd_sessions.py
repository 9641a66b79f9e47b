"""Who is logged in, since when, idle, and mail: the passwd source against a utmp file and a mail spool made here.

The accounts are real (``useradd``); the sessions are records written to a
utmp file in the record layout, on real terminals (``openpty``) whose
access times the test sets, so the idle times are the terminal's own.
tests/test_finger_layout.py checks the same lines against Debian's
finger(1); here the daemon shows them through finger, the list, the web
view and JSON.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import Accounts, write_owned
from fingerd.sources.sessions import UTMP_RECORD, USER_PROCESS

pytestmark = pytest.mark.skipif(not Accounts.possible(), reason="creating accounts needs root and useradd")

HOSTILE_HOST = "evil\x1b[2J\nhost"
THREE_HOURS = 3 * 3600


def utmp_record(user: str, tty: str, host: str, since: int, pid: int = 4242) -> bytes:
    return UTMP_RECORD.pack(
        USER_PROCESS, pid, tty.encode(), tty[-4:].encode(), user.encode(), host.encode(), 0, 0, 0, since, 0,
        0, 0, 0, 0, b"",
    )


@pytest.fixture(scope="module")
def accounts():
    with Accounts.temporary() as made:
        alice, _ = made.add("alice", gecos="Alice Liddell,Room 12,5551234,")
        bob, _ = made.add("bob", gecos="Bob")
        hidden, home = made.add("hidden", gecos="Hidden")
        write_owned(home, ".nofinger", b"", hidden)
        yield {"alice": alice, "bob": bob, "hidden": hidden}


@pytest.fixture(scope="module")
def terminals():
    """Two real terminals, idle three hours and one minute."""
    opened = [os.openpty() for _ in range(2)]
    names = [os.ttyname(follower)[len("/dev/"):] for _, follower in opened]
    yield names
    for leader, follower in opened:
        os.close(leader)
        os.close(follower)


def set_idle(tty: str, seconds: int) -> None:
    now = time.time()
    os.utime(f"/dev/{tty}", (now - seconds, now - seconds))


@pytest.fixture
def world(tmp_path, accounts, terminals):
    """A utmp where alice has two sessions (one from a hostile host name) and a partial record after them."""
    set_idle(terminals[0], THREE_HOURS + 30)
    set_idle(terminals[1], 60)
    since = int(time.time()) - 4 * 3600
    utmp = tmp_path / "utmp"
    utmp.write_bytes(
        utmp_record(accounts["alice"], terminals[0], "", since)
        + utmp_record(accounts["alice"], terminals[1], HOSTILE_HOST, since + 600)
        + utmp_record(accounts["hidden"], terminals[0], "", since)
        + utmp_record("nosuchaccount", terminals[0], "", since)
    )
    mail = tmp_path / "mail"
    mail.mkdir()
    return {"utmp": utmp, "mail": mail, "since": since}


@pytest.fixture
def start(start_daemon, accounts, world, ports):
    floor = min(pwd_uid(name) for name in accounts.values())

    def start(status: str = "filed: from the status file\n", env: dict[str, str] | None = None, **options):
        settings = {
            "source": "[file, passwd]",
            "passwd_min_uid": floor,
            "utmp_file": str(world["utmp"]),
            "mail_dir": str(world["mail"]),
            "web_port": ports.take(),
            **options,
        }
        daemon = start_daemon(status, env=env or {"TZ": "UTC"}, **settings)
        daemon.web_port = settings["web_port"]
        return daemon

    return start


def pwd_uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid


def get_json(daemon, path: str) -> object:
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.web_port}{path}", timeout=5) as response:
        return json.load(response)


def test_a_logged_in_user_shows_each_session_since_when_and_idle(start, accounts, terminals, world):
    daemon = start()
    reply = daemon.text(accounts["alice"]).split("\r\n")
    on_since = [line for line in reply if line.startswith("On since ")]
    assert len(on_since) == 2, reply
    started = time.strftime("%a %b %e %H:%M", time.localtime(world["since"]))
    assert on_since[0].startswith(f"On since {started} (UTC) on {terminals[0]}")
    assert on_since[0].endswith("3 hours idle"), on_since[0]
    assert f"on {terminals[1]}" in on_since[1] and "1 minute idle" in on_since[1]
    assert "from" not in " ".join(on_since), "where users log in from is not shown by default"
    assert reply.index(on_since[0]) == 2, "after Login/Name and Directory/Shell, as finger -l"
    assert "Never logged in." not in reply
    assert "No mail." in reply and reply.index("No mail.") > reply.index(on_since[1])


def test_hosts_are_shown_only_with_show_hosts_and_arrive_escaped(start, accounts):
    daemon = start(show_hosts="true")
    raw = daemon.query(accounts["alice"].encode() + b"\r\n")
    assert b"\x1b" not in raw and b"evil\nhost" not in raw
    assert b"from evil^[[2J^Jhost" in raw
    listing = daemon.query(b"\r\n")
    assert b"(evil^[[2J^Jhost)" in listing and b"\x1b" not in listing


def test_times_are_in_the_daemon_s_time_zone(start, accounts, world):
    daemon = start(env={"TZ": "Europe/Paris"})
    reply = daemon.text(accounts["alice"])
    assert " (CET) on " in reply or " (CEST) on " in reply, reply


def test_the_list_shows_who_is_logged_in_then_the_status_file(start, accounts, terminals):
    daemon = start()
    lines = daemon.text("").split("\r\n")
    assert lines[0].split() == ["Login", "Name", "Tty", "Idle", "Login", "Time", "Office", "Office", "Phone"]
    sessions = [line for line in lines[1:] if line.startswith(accounts["alice"])]
    assert len(sessions) == 2, lines
    assert terminals[0] in sessions[0] and "3:00" in sessions[0] and "Room 12" in sessions[0]
    assert "555-1234" in sessions[0], "the office phone as finger prints it"
    assert not [line for line in lines if line.startswith(accounts["bob"])], "bob is not logged in"
    assert "filed" in lines[3] and "from the status file" in lines[3], lines
    users = get_json(daemon, "/api/users")
    assert accounts["alice"] in users and accounts["bob"] not in users and users["filed"] == "from the status file"


def test_a_logged_in_user_of_the_status_file_keeps_her_status_line(start, accounts):
    lines = start(status=f"{accounts['alice']}: at lunch\n").text("").split("\r\n")
    assert [line for line in lines if line.startswith(accounts["alice"]) and "at lunch" in line], lines
    assert len([line for line in lines if line.startswith(accounts["alice"])]) == 3, "two sessions, one status"


def test_no_list_users_keeps_who_is_on_private_everywhere(start, accounts):
    daemon = start(list_users="false")
    assert daemon.text("") == "Finger online user list denied\r\n"
    assert get_json(daemon, "/api/online") == {} and get_json(daemon, "/api/users") == {}
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.web_port}/", timeout=5) as response:
        assert accounts["alice"] not in response.read().decode()
    assert get_json(daemon, f"/api/users/{accounts['alice']}")["online"] is True, "one user, asked by name, as finger"


def test_list_all_accounts_lists_every_account_as_before(start, accounts):
    daemon = start(list_all_accounts="true")
    listing = daemon.text("")
    assert "Login" not in listing.split("\r\n")[0]
    assert accounts["alice"] in listing and accounts["bob"] in listing and "filed" in listing
    assert list(get_json(daemon, "/api/online")) == [accounts["alice"]], "who is on, all the same"


def test_a_hidden_account_s_sessions_are_never_shown(start, accounts):
    daemon = start(show_hosts="true")
    assert accounts["hidden"] not in daemon.text("") and "nosuchaccount" not in daemon.text("")
    assert daemon.text(accounts["hidden"]) == "No such user\r\n"
    assert accounts["hidden"] not in get_json(daemon, "/api/online")
    assert accounts["hidden"] not in get_json(daemon, "/api/users")


def test_nobody_logged_in(start, accounts, world):
    world["utmp"].write_bytes(b"")
    daemon = start()
    assert daemon.text("").startswith("No one logged on.\r\nfiled")
    assert "Never logged in." in daemon.text(accounts["alice"])


def test_json_says_who_is_on_and_for_how_long(start, accounts, world):
    daemon = start()
    alice = get_json(daemon, f"/api/users/{accounts['alice']}")
    assert alice["online"] is True
    assert 50 <= alice["idle_seconds"] <= 120, "the least idle session"
    assert alice["since"] == time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.localtime(world["since"]))
    bob = get_json(daemon, f"/api/users/{accounts['bob']}")
    assert bob["online"] is False and bob["idle_seconds"] is None
    assert list(get_json(daemon, "/api/online")) == [accounts["alice"]]
    assert get_json(daemon, "/api/users/filed") == {"name": "filed", "status": "from the status file"}


@pytest.mark.parametrize(
    "state, expected",
    [
        ("none", ["No mail."]),
        ("empty", ["No mail."]),
        ("new", ["New mail received ", "     Unread since "]),
        ("read", ["Mail last read "]),
    ],
)
def test_each_mail_state(start, accounts, world, state, expected):
    spool = world["mail"] / accounts["bob"]
    now = time.time()
    if state != "none":
        spool.write_bytes(b"" if state == "empty" else b"From alice\n\nhello\n")
        received, read = (now - 60, now - 3600) if state == "new" else (now - 3600, now - 60)
        os.utime(spool, (read, received))
        spool.chmod(0o600)
    reply = start().text(accounts["bob"]).split("\r\n")
    mail_lines = [line for line in reply if "mail" in line.lower() or line.startswith("     Unread")]
    assert len(mail_lines) == len(expected), reply
    for line, start_of in zip(mail_lines, expected):
        assert line.startswith(start_of), line


def test_no_show_mail_leaves_mail_out_and_the_spool_is_never_read(start, accounts, world):
    spool = world["mail"] / accounts["bob"]
    spool.write_bytes(b"secret\n")
    os.utime(spool, (time.time() - 60, time.time() - 60))
    assert "mail" not in start(show_mail="false").text(accounts["bob"]).lower()
    before = os.stat(spool).st_atime
    assert "Mail last read" in start().text(accounts["bob"])
    assert os.stat(spool).st_atime == before, "stat only: reading would change the access time"


@pytest.mark.parametrize("kind", ["missing", "fifo", "directory", "symlink to /dev/zero"])
def test_an_odd_utmp_is_answered_without_sessions_and_logged_once(start, accounts, world, kind):
    utmp: Path = world["utmp"]
    utmp.unlink()
    if kind == "fifo":
        os.mkfifo(utmp)
    elif kind == "directory":
        utmp.mkdir()
    elif kind == "symlink to /dev/zero":
        utmp.symlink_to("/dev/zero")
    daemon = start()
    for _ in range(3):
        started = time.monotonic()
        reply = daemon.text(accounts["alice"])
        assert time.monotonic() - started < 3
        assert "Never logged in." in reply
    assert daemon.text("").startswith("No one logged on.")
    log = daemon.wait_for_log(f"passwd: utmp {utmp}: ")
    assert log.count(f"passwd: utmp {utmp}: ") == 1, log


def test_a_partial_last_record_keeps_the_whole_ones_and_is_logged_once(start, accounts, world):
    with open(world["utmp"], "ab") as utmp:
        utmp.write(utmp_record(accounts["bob"], "pts/99", "", world["since"])[:100])
    daemon = start()
    for _ in range(2):
        assert daemon.text(accounts["alice"]).count("On since ") == 2
    assert "Never logged in." in daemon.text(accounts["bob"])
    log = daemon.wait_for_log("partial record")
    assert log.count("partial record") == 1


def test_a_utmp_terminal_name_cannot_reach_outside_dev(start, accounts, world, tmp_path):
    """ut_line is data: ``../etc/passwd`` is no terminal, so no idle time is taken from it."""
    world["utmp"].write_bytes(utmp_record(accounts["alice"], "pts/../../dev/null", "", world["since"]))
    os.utime("/dev/null", (time.time() - THREE_HOURS, time.time() - THREE_HOURS))
    reply = start().text(accounts["alice"])
    line = next(line for line in reply.split("\r\n") if line.startswith("On since "))
    assert "idle" not in line and "on pts/../../dev/null" in line, "/dev/null is a character device, never asked"
