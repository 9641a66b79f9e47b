"""The session, last-login and mail lines, checked line by line against Debian's finger(1).

Debian's ``finger`` reads fixed paths: /var/run/utmp (``/run/utmp``),
/var/log/lastlog and /var/mail.  Each run gets a private mount namespace
(``unshare -m``) where those are the test's own: a tmpfs on /run and on
/var/log holding copies of the test's utmp and lastlog, and the test's
spool directory bound over /var/mail.  The sessions are on real terminals
(`os.openpty`) whose access time and mode the test sets, for a temporary
account with a real passwd entry; finger is run with the same time zone as
the formatters, in the C locale, with no terminal on stdin (so 80 columns,
as under in.fingerd).

finger takes "now" once when it starts; a run whose start and end fall in
the same second tells it, and the formatters are given that second.

Trailing blanks are ignored: finger leaves some (``No logins   ``), the
formatters drop them.  Hosts are compared as shown (``show_hosts``), since
finger always shows them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import Accounts, in_zone
from fingerd.sources.mail import mail_lines, mail_status
from fingerd.sources.passwd import Account
from fingerd.sources.sessions import (
    LASTLOG_RECORD,
    USER_PROCESS,
    UTMP_RECORD,
    last_login_lines,
    list_header,
    list_line,
    list_widths,
    login_lines,
    read_last_login,
    read_utmp,
    terminal,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: a temporary account, and a mount namespace over /run, /var/log and /var/mail"
)

GECOS = "Alice Liddell,Room 12,5551234,5559876"
DEAD_PROCESS = 8
NAMESPACE_SCRIPT = (
    'mount -t tmpfs tmpfs /run && cp "$0/utmp" /run/utmp'
    ' && mount -t tmpfs tmpfs /var/log && cp "$0/lastlog" /var/log/lastlog'
    ' && mount --bind "$0/mail" /var/mail'
    ' && exec "$@"'
)


@pytest.fixture(scope="module")
def account() -> Iterator[pwd.struct_passwd]:
    for tool, package in (("finger", "finger"), ("unshare", "util-linux"), ("useradd", "passwd"), ("lastlog", "login")):
        assert shutil.which(tool), f"{tool} is required to compare with Debian's finger: apt-get install {package}"
    assert Path("/var/mail").is_dir(), "/var/mail is missing (base-files makes it): finger reads mail there"
    with Accounts.temporary() as accounts:
        login, _ = accounts.add("lay", gecos=GECOS)
        yield pwd.getpwnam(login)


@pytest.fixture
def ptys() -> Iterator[list[str]]:
    """Two real terminals, named as utmp names them (``pts/N``)."""
    pairs = [os.openpty() for _ in range(2)]
    try:
        yield [os.ttyname(slave).removeprefix("/dev/") for _, slave in pairs]
    finally:
        for master, slave in pairs:
            os.close(slave)
            os.close(master)


@dataclass
class World:
    """The utmp, lastlog and spool directory that both finger and the formatters read."""

    directory: Path
    entry: pwd.struct_passwd
    records: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.utmp = self.directory / "utmp"
        self.lastlog = self.directory / "lastlog"
        self.mail = self.directory / "mail"
        self.utmp.write_bytes(b"")
        self.lastlog.write_bytes(b"")
        self.mail.mkdir()

    @property
    def login(self) -> str:
        return self.entry.pw_name

    def session(self, tty: str, host: str, since: int, user: str | None = None, kind: int = USER_PROCESS) -> None:
        user_bytes = (user or self.login).encode()
        self.records.append(
            UTMP_RECORD.pack(kind, 4000 + len(self.records), tty.encode(), tty[-4:].encode(), user_bytes,
                             host.encode(), 0, 0, 0, since, 0, 0, 0, 0, 0, b"")
        )
        self.utmp.write_bytes(b"".join(self.records))

    def last_login(self, when: int, tty: str, host: str) -> None:
        with open(self.lastlog, "r+b") as lastlog:
            lastlog.seek(self.entry.pw_uid * LASTLOG_RECORD.size)
            lastlog.write(LASTLOG_RECORD.pack(when, tty.encode(), host.encode()))

    def spool(self, read: int, received: int) -> None:
        path = self.mail / self.login
        path.write_bytes(b"From bob@example.org Mon Nov 30 12:00:00 2020\n\nhello\n")
        os.utime(path, (read, received))

    def run(self, zone: str, *command: str) -> tuple[int, list[str]]:
        """``command`` in the namespace, and the second it ran in; the output's lines, trailing blanks dropped."""
        env = {"PATH": os.environ["PATH"], "TZ": zone, "LC_ALL": "C"}
        for _ in range(10):
            while time.time() % 1 > 0.6:
                time.sleep(0.05)
            before = time.time()
            result = subprocess.run(
                ["unshare", "-m", "sh", "-c", NAMESPACE_SCRIPT, str(self.directory), *command],
                check=False, capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=30,
            )
            after = time.time()
            assert result.returncode == 0 and not result.stderr, result.stderr.decode(errors="replace")
            if int(before) == int(after):
                return int(before), [line.rstrip() for line in result.stdout.decode("utf-8").splitlines()]
        raise AssertionError(f"{command} never ran within one second")


@pytest.fixture
def world(tmp_path, account) -> World:
    return World(tmp_path, account)


def long_block(lines: list[str]) -> list[str]:
    """finger -l's lines between the account's fields and ``No Plan.``: what the formatters lay out."""
    assert [line.split(":")[0] for line in lines[:3]] == ["Login", "Directory", "Office"], lines
    assert lines[-1] == "No Plan.", lines
    return lines[3:-1]


def ours_long(world: World, now: int) -> list[str]:
    sessions, problem = read_utmp(str(world.utmp))
    assert problem is None
    mine = [session for session in sessions if session.user == world.login]
    if mine:
        lines = login_lines([(session, terminal(session.tty, now)) for session in mine], True)
    else:
        lines = last_login_lines(read_last_login(str(world.lastlog), world.entry.pw_uid), True, now)
    return lines + mail_lines(mail_status(str(world.mail), world.login))


def ours_list(world: World, now: int, with_last_login: bool) -> list[str]:
    account = Account.from_pwd(world.entry)
    _, office, office_phone, _ = account.gecos_fields()
    widths = list_widths([(world.login, account.real_name())])
    sessions, _ = read_utmp(str(world.utmp))
    lines = [list_header(widths)]
    for session in sessions:
        if session.user == world.login:
            state = terminal(session.tty, now)
            assert state is not None
            lines.append(list_line(world.login, account.real_name(), session, state.idle, True, now, office=office,
                                   office_phone=office_phone, writable=state.writable, widths=widths))
    if with_last_login and len(lines) == 1:
        last = read_last_login(str(world.lastlog), world.entry.pw_uid)
        lines.append(list_line(world.login, account.real_name(), last, None, True, now, office=office,
                               office_phone=office_phone, widths=widths))
    return lines


def set_terminal(tty: str, idle: int, mode: int) -> None:
    os.utime(f"/dev/{tty}", (int(time.time()) - idle, int(time.time()) - 5))
    os.chmod(f"/dev/{tty}", mode)


@dataclass(frozen=True)
class Case:
    zone: str
    idles: tuple[int, int]
    mode: int
    hosts: tuple[str, ...]
    mail: str  # "none", "new" or "read"
    shows: tuple[str, ...]


CASES = {
    "local session, a few minutes idle": Case("UTC", (330, 0), 0o620, ("",), "none", ("5 minutes", "No mail.")),
    "local and remote, hours idle, mesg n": Case(
        "Europe/Paris", (7530, 40), 0o600, ("", "remote.example"), "new", ("2 hours 5 minutes idle", "(messages off)",
                                                                            "from remote.example", "Unread since")
    ),
    "not idle, mesg n": Case("UTC", (0, 0), 0o600, ("",), "read", ("(messages off)", "Mail last read")),
    "days idle, from a host with an escape": Case(
        "America/New_York", (3 * 86400 + 4 * 3600 + 100, 90), 0o620, ("evil\x1b[2Jhost", "café.example"), "none",
        ("3 days 4 hours idle", "evil^[[2Jhost", "1 minute "),
    ),
}


def write_mail(world: World, state: str) -> None:
    now = int(time.time())
    if state == "new":
        world.spool(now - 4000, now - 60)
    elif state == "read":
        world.spool(now - 60, now - 4000)


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_sessions_as_finger_l_shows_them(world, ptys, case):
    started = int(time.time()) - 7200
    for number, host in enumerate(case.hosts):
        set_terminal(ptys[number], case.idles[number], case.mode)
        world.session(ptys[number], host, started + number * 60)
    world.session(ptys[0], "", started, user="nosuchuser")
    world.session(ptys[1], "", started, kind=DEAD_PROCESS)
    write_mail(world, case.mail)
    now, lines = world.run(case.zone, "finger", "-l", world.login)
    with in_zone(case.zone):
        ours = ours_long(world, now)
    assert long_block(lines) == ours
    for text in case.shows:
        assert text in "\n".join(ours)


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_sessions_as_the_finger_list_shows_them(world, ptys, case):
    started = int(time.time()) - 7200
    for number, host in enumerate(case.hosts):
        set_terminal(ptys[number], case.idles[number], case.mode)
        world.session(ptys[number], host, started + number * 60)
    world.session(ptys[0], "", started, user="nosuchuser")
    now, lines = world.run(case.zone, "finger", "-s")
    with in_zone(case.zone):
        assert lines == ours_list(world, now, with_last_login=False)
    now, lines = world.run(case.zone, "finger", "-s", world.login)
    with in_zone(case.zone):
        assert lines == ours_list(world, now, with_last_login=True)


LAST_LOGINS = {
    "an hour ago, from a host": (3600, "pts/7", "remote.example", "new"),
    "a year ago, on the console": (365 * 86400, "tty1", "", "read"),
    "never": (None, "", "", "none"),
}


@pytest.mark.parametrize(("ago", "tty", "host", "mail"), LAST_LOGINS.values(), ids=list(LAST_LOGINS))
def test_a_user_not_logged_in_as_finger_shows_them(world, ago, tty, host, mail):
    if ago is not None:
        world.last_login(int(time.time()) - ago, tty, host)
    write_mail(world, mail)
    for zone in ("UTC", "Europe/Paris"):
        now, lines = world.run(zone, "finger", "-l", world.login)
        with in_zone(zone):
            assert long_block(lines) == ours_long(world, now)
        now, lines = world.run(zone, "finger", "-s", world.login)
        with in_zone(zone):
            assert lines == ours_list(world, now, with_last_login=True)


def test_the_lastlog_layout_is_the_one_lastlog_reads(world):
    when = 1606774205  # Mon Nov 30 22:10:05 2020 UTC
    world.last_login(when, "pts/7", "remote.example")
    _, lines = world.run("UTC", "lastlog", "-u", world.login)
    assert lines[1].split() == [world.login, "pts/7", "remote.example", "Mon", "Nov", "30", "22:10:05", "+0000", "2020"]
    assert read_last_login(str(world.lastlog), world.entry.pw_uid) == (float(when), "pts/7", "remote.example")
