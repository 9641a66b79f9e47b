"""The ``passwd`` source: system accounts and their ``~/.plan`` ("the standard thing").

Which accounts: uid at or above ``--passwd-min-uid``, never ``nobody``,
never one whose shell is ``nologin`` or ``false`` (a service account), never
one named in ``--passwd-deny``, and never one whose owner made a
``~/.nofinger`` (or whose home the daemon may not look into, where such a
file could hide).  Every other account answers exactly like a name that
does not exist, so a finger query cannot tell a system account from
nobody; and it ends the lookup (`Hidden`), so no later source can show it.

Reading a home directory can hang (NFS, a FUSE mount at ``~/.plan``), and
nothing interrupts a blocked ``open``; so the reads run in this source's
own ``passwd-read-N`` threads (`Offload`) and a lookup waits for them only
until its deadline.  A read is quick, so when all the threads are busy (a
burst of queries) a lookup waits for one, again until its deadline.

The reply follows the classic layout of BSD and GNU finger::

    Login: alice                            Name: Alice Liddell
    Directory: /home/alice                  Shell: /bin/bash
    On since Mon Nov 30 22:10 (UTC) on pts/3   5 minutes 30 seconds idle
    No mail.
    Plan:
    ...

and ``/W`` adds the office and phone fields, ``~/.project`` and
``~/.pgpkey``.  The session lines come from utmp (`fingerd.sources.sessions`;
where from only with ``--show-hosts``), or the last login from lastlog
when the user is not on; the mail line from the spool's times
(`fingerd.sources.mail`, ``--no-show-mail`` leaves it out).  The user list
is who is logged in now, one line per session in finger's columns, unless
``--list-all-accounts`` asks for every account.  The layout is a pure
function of the account, its sessions and the file contents
(`account_reply`); only `PasswdSource` touches the system.
"""

from __future__ import annotations

import logging
import os
import pwd
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from fingerd.sources import mail, sessions
from fingerd.sources.base import NO_PLAN, Hidden, Lines, Presence, Record, WhoIsOn, text_lines
from fingerd.sources.home_files import home_file_exists, read_home_file
from fingerd.sources.offload import Offload
from fingerd.sources.sessions import Session, Terminal

log = logging.getLogger("fingerd.sources")

NOBODY_UID = 65534
NOBODY = "nobody"
NO_LOGIN_SHELLS = frozenset({"nologin", "false"})
COLUMN = 40
NO_ONE_ON = "No one logged on."


def _text(value: str) -> str:
    """Text from the passwd database; bytes that are not UTF-8 become ``\\xNN``."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Account:
    """The fields of a passwd entry that finger shows."""

    login: str
    uid: int
    gecos: str
    home: str
    shell: str

    @classmethod
    def from_pwd(cls, entry: pwd.struct_passwd) -> Account:
        """The fields finger shows, from a `pwd` entry."""
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gecos, entry.pw_dir, entry.pw_shell)

    def gecos_fields(self) -> list[str]:
        """Full name, office, office phone, home phone: the comma-separated GECOS fields."""
        fields = [_text(field.strip()) for field in self.gecos.split(",")]
        return (fields + ["", "", "", ""])[:4]

    def real_name(self) -> str:
        """The full name, with ``&`` standing for the login name capitalized (BSD's rule)."""
        return self.gecos_fields()[0].replace("&", self.login[:1].upper() + self.login[1:])


@dataclass(frozen=True)
class HomeFiles:
    """What the account's dot files hold; None where a file is absent or unsafe."""

    plan: Lines | None = None
    project: Lines | None = None
    pgpkey: Lines | None = None


def is_listed(account: Account, min_uid: int, deny: Iterable[str]) -> bool:
    """Whether finger may show this account at all (``~/.nofinger`` aside)."""
    if account.uid < min_uid or account.uid == NOBODY_UID or account.login == NOBODY:
        return False
    if os.path.basename(account.shell) in NO_LOGIN_SHELLS:
        return False
    return account.login not in deny


def _pair(left: str, right: str) -> str:
    return f"{left:<{COLUMN}}{right}".rstrip()


def account_reply(account: Account, files: HomeFiles, verbose: bool, presence: Lines = ()) -> Lines:
    """The classic finger layout of one account; ``presence`` is its session and mail lines (`presence_lines`)."""
    name, office, office_phone, home_phone = account.gecos_fields()
    lines = [
        _pair(f"Login: {_text(account.login)}", f"Name: {account.real_name()}"),
        _pair(f"Directory: {_text(account.home)}", f"Shell: {_text(account.shell)}"),
    ]
    if verbose:
        lines += _office_lines(office, office_phone, home_phone)
    lines += presence
    if verbose:
        if files.project:
            lines += [f"Project: {files.project[0]}", *files.project[1:]]
    lines += ["Plan:", *files.plan] if files.plan else [NO_PLAN]
    if verbose and files.pgpkey:
        lines += ["PGP key:", *files.pgpkey]
    return tuple(lines)


def _office_lines(office: str, office_phone: str, home_phone: str) -> list[str]:
    office_phone, home_phone = sessions.format_phone(office_phone), sessions.format_phone(home_phone)
    work = ", ".join(part for part in (office, office_phone) if part)
    if not work and not home_phone:
        return []
    return [_pair(f"Office: {work}" if work else "", f"Home Phone: {home_phone}" if home_phone else "")]


@dataclass(frozen=True)
class Whereabouts:
    """Where an account is now, as its reply shows it: its sessions and their terminals, or its last login; its mail."""

    sessions: tuple[tuple[Session, Terminal | None], ...] = ()
    last_login: sessions.LastLogin | None = None
    mail: os.stat_result | None = None


def presence_lines(where: Whereabouts, settings: PasswdSettings, now: float) -> Lines:
    """The session (or last login) and mail lines of one account, in finger's words."""
    if where.sessions:
        lines = sessions.login_lines(where.sessions, settings.show_hosts)
    else:
        lines = sessions.last_login_lines(where.last_login, settings.show_hosts, now)
    if settings.show_mail:
        lines += mail.mail_lines(where.mail, now)
    return tuple(lines)


def presence_of(where: Whereabouts) -> Presence:
    """Online or not, for the web view: the least idle session, and the earliest start."""
    if not where.sessions:
        return Presence(False)
    idle = [state.idle for _, state in where.sessions if state is not None]
    return Presence(
        True,
        int(min(idle)) if idle else None,
        min(session.since for session, _ in where.sessions),
    )


def account_record(
    account: Account, files: HomeFiles, where: Whereabouts, settings: PasswdSettings, now: float
) -> Record:
    """The plan is the status the web view shows; finger gets the classic layout, with sessions and mail."""
    presence = presence_lines(where, settings, now)
    return Record(
        account.login,
        files.plan or (),
        account_reply(account, files, verbose=False, presence=presence),
        account_reply(account, files, verbose=True, presence=presence),
        presence_of(where),
    )


def who_is_on(online: list[tuple[Account, Session, Terminal | None]], show_hosts: bool, now: float) -> WhoIsOn:
    """The top of the user list: finger's short listing, one line per session, by login and then utmp's order."""
    if not online:
        return WhoIsOn(frozenset(), (NO_ONE_ON,))
    online = sorted(online, key=lambda entry: entry[0].login)
    widths = sessions.list_widths((_text(account.login), account.real_name()) for account, _, _ in online)
    lines = [sessions.list_header(widths)]
    for account, session, state in online:
        _, office, office_phone, _ = account.gecos_fields()
        lines.append(
            sessions.list_line(
                _text(account.login),
                account.real_name(),
                session,
                None if state is None else state.idle,
                show_hosts,
                now,
                office,
                sessions.format_phone(office_phone),
                writable=True if state is None else state.writable,
                widths=widths,
            )
        )
    by_login: dict[str, list[tuple[Session, Terminal | None]]] = {}
    for account, session, state in online:
        by_login.setdefault(account.login, []).append((session, state))
    presence = tuple((login, presence_of(Whereabouts(tuple(entries)))) for login, entries in sorted(by_login.items()))
    return WhoIsOn(frozenset(by_login), tuple(lines), presence)


@dataclass(frozen=True)
class Roll:
    """Who the source lists (with their plans) and who is logged in, from one reading of utmp."""

    listing: list[tuple[str, Lines]]
    who: WhoIsOn


@dataclass(frozen=True)
class PasswdSettings:
    """What the passwd source shows, and where it looks (``--passwd-*``, ``--utmp-file``, ``--mail-dir``, ...)."""

    min_uid: int = 1000
    deny: frozenset[str] = frozenset()
    utmp_file: str = "/var/run/utmp"
    lastlog_file: str = "/var/log/lastlog"
    show_hosts: bool = False
    mail_dir: str = "/var/mail"
    show_mail: bool = True
    list_all_accounts: bool = False


class PasswdSource:
    """Accounts from `pwd`, plans from their homes, sessions from utmp: read in threads of this source's own."""

    name = "passwd"
    blocking = True
    file_limit = 64 * 1024
    utmp_limit = sessions.UTMP_LIMIT
    listing_ttl = 5.0
    readers = 4

    def __init__(self, min_uid: int = 1000, deny: Iterable[str] = (), settings: PasswdSettings | None = None) -> None:
        self.settings = settings or PasswdSettings(min_uid, frozenset(deny))
        self._offload = Offload("passwd-read", self.readers)
        self._listing_lock = threading.Lock()
        self._listing: tuple[float, Roll] = (-self.listing_ttl, Roll([], who_is_on([], False, 0.0)))
        self._problem_lock = threading.Lock()
        self._utmp_problem: str | None = None

    def lookup(self, name: str, deadline: float) -> Record | None:
        return self._offload.call(lambda: self._lookup(name), deadline, f"passwd entry of {name}")

    def names(self, deadline: float) -> list[tuple[str, Lines]]:
        """The accounts logged in now (every visible one with ``--list-all-accounts``), with their plans."""
        return self._roll(deadline).listing

    def who(self, deadline: float) -> WhoIsOn:
        """Who is logged in, and finger's short listing of their sessions (the list's head unless ``--list-all-accounts``)."""
        return self._roll(deadline).who

    def _roll(self, deadline: float) -> Roll:
        """The listing and the sessions table, from one reading of utmp, rebuilt at most every `listing_ttl` seconds.

        One reading, so the two never disagree about who is on.  A fresh
        roll is answered here, without a trip through the reader threads,
        so it is there even while they are all stuck.
        """
        with self._listing_lock:
            built, roll = self._listing
            if time.monotonic() - built < self.listing_ttl:
                return roll
        return self._offload.call(self._build_roll, deadline, "passwd listing")

    def start(self) -> None:
        self._offload.start()

    def alive(self) -> bool:
        return self._offload.alive()

    def cancel(self) -> None:
        self._offload.cancel()

    def stop(self, deadline: float) -> None:
        self._offload.stop(deadline)

    def _lookup(self, name: str) -> Record | None:
        try:
            account = Account.from_pwd(pwd.getpwnam(name))
        except KeyError:
            return None
        if not self._visible(account):
            raise Hidden(name)
        now = time.time()
        where = self._whereabouts(account, self._sessions(), now)
        return account_record(account, self._files(account, verbose=True), where, self.settings, now)

    def _build_roll(self) -> Roll:
        """Read utmp, the accounts and their plans, outside the lock: a read stuck on a home holds no other caller."""
        with self._listing_lock:
            built, roll = self._listing
            if time.monotonic() - built < self.listing_ttl:
                return roll
        now = time.time()
        logged_in = [
            (account, account_sessions)
            for account, account_sessions in self._online_accounts(self._sessions())
            if self._visible(account)
        ]
        if self.settings.list_all_accounts:
            accounts = [Account.from_pwd(entry) for entry in pwd.getpwall()]
            accounts = [account for account in accounts if self._visible(account)]
        else:
            accounts = [account for account, _ in logged_in]
        listing = sorted((account.login, self._files(account, verbose=False).plan or ()) for account in accounts)
        online = [
            (account, session, sessions.terminal(session.tty, now))
            for account, account_sessions in logged_in
            for session in account_sessions
        ]
        table = who_is_on(online, self.settings.show_hosts, now)
        roll = Roll(listing, replace(table, heads_list=not self.settings.list_all_accounts, source=self.name))
        with self._listing_lock:
            self._listing = (time.monotonic(), roll)
        return roll

    def _online_accounts(self, all_sessions: tuple[Session, ...]) -> list[tuple[Account, list[Session]]]:
        """Each account with a session in utmp, and its sessions; names in utmp that pwd does not know are left out."""
        by_user: dict[str, list[Session]] = {}
        for session in all_sessions:
            by_user.setdefault(session.user, []).append(session)
        online = []
        for user, user_sessions in sorted(by_user.items()):
            try:
                online.append((Account.from_pwd(pwd.getpwnam(user)), user_sessions))
            except (KeyError, ValueError):
                continue
        return online

    def _sessions(self) -> tuple[Session, ...]:
        """Every login session in utmp; none when it cannot be read, said once in the log until that changes."""
        found, problem = sessions.read_utmp(self.settings.utmp_file, self.utmp_limit)
        with self._problem_lock:
            if problem != self._utmp_problem:
                self._utmp_problem = problem
                if problem is not None:
                    log.warning("passwd: utmp %s: %s", self.settings.utmp_file, problem)
                else:
                    log.info("passwd: %s: readable again", self.settings.utmp_file)
        return found

    def _whereabouts(self, account: Account, all_sessions: tuple[Session, ...], now: float) -> Whereabouts:
        own = tuple(
            (session, sessions.terminal(session.tty, now)) for session in all_sessions if session.user == account.login
        )
        last = None if own else sessions.read_last_login(self.settings.lastlog_file, account.uid)
        spool = mail.mail_status(self.settings.mail_dir, account.login) if self.settings.show_mail else None
        return Whereabouts(own, last, spool)

    def _visible(self, account: Account) -> bool:
        settings = self.settings
        return is_listed(account, settings.min_uid, settings.deny) and not home_file_exists(account.home, ".nofinger")

    def _files(self, account: Account, verbose: bool) -> HomeFiles:
        def read(name: str) -> Lines | None:
            data = read_home_file(account.home, name, account.uid, self.file_limit)
            return None if data is None else text_lines(data, self.file_limit)

        if not verbose:
            return HomeFiles(plan=read(".plan"))
        return HomeFiles(plan=read(".plan"), project=read(".project"), pgpkey=read(".pgpkey"))
