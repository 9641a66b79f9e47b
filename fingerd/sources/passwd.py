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
    Plan:
    ...

and ``/W`` adds the office and phone fields, ``~/.project`` and
``~/.pgpkey``.  The layout is a pure function of the account and the file
contents (`account_reply`); only `PasswdSource` touches the system.
"""

from __future__ import annotations

import os
import pwd
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from fingerd.sources.base import NO_PLAN, Hidden, Lines, Record, text_lines
from fingerd.sources.home_files import home_file_exists, read_home_file
from fingerd.sources.offload import Offload

NOBODY_UID = 65534
NOBODY = "nobody"
NO_LOGIN_SHELLS = frozenset({"nologin", "false"})
COLUMN = 40


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


def account_reply(account: Account, files: HomeFiles, verbose: bool) -> Lines:
    """The classic finger layout of one account."""
    name, office, office_phone, home_phone = account.gecos_fields()
    lines = [
        _pair(f"Login: {_text(account.login)}", f"Name: {account.real_name()}"),
        _pair(f"Directory: {_text(account.home)}", f"Shell: {_text(account.shell)}"),
    ]
    if verbose:
        lines += _office_lines(office, office_phone, home_phone)
        if files.project:
            lines += [f"Project: {files.project[0]}", *files.project[1:]]
    lines += ["Plan:", *files.plan] if files.plan else [NO_PLAN]
    if verbose and files.pgpkey:
        lines += ["PGP key:", *files.pgpkey]
    return tuple(lines)


def _office_lines(office: str, office_phone: str, home_phone: str) -> list[str]:
    work = ", ".join(part for part in (office, office_phone) if part)
    if not work and not home_phone:
        return []
    return [_pair(f"Office: {work}" if work else "", f"Home Phone: {home_phone}" if home_phone else "")]


def account_record(account: Account, files: HomeFiles) -> Record:
    """The plan is the status the web view shows; finger gets the classic layout."""
    return Record(
        account.login,
        files.plan or (),
        account_reply(account, files, verbose=False),
        account_reply(account, files, verbose=True),
    )


class PasswdSource:
    """Accounts from `pwd`, plans from their homes, read in threads of this source's own."""

    name = "passwd"
    blocking = True
    file_limit = 64 * 1024
    listing_ttl = 5.0
    readers = 4

    def __init__(self, min_uid: int = 1000, deny: Iterable[str] = ()) -> None:
        self.min_uid = min_uid
        self.deny = frozenset(deny)
        self._offload = Offload("passwd-read", self.readers)
        self._listing_lock = threading.Lock()
        self._listing: tuple[float, list[tuple[str, Lines]]] = (-self.listing_ttl, [])

    def lookup(self, name: str, deadline: float) -> Record | None:
        return self._offload.call(lambda: self._lookup(name), deadline, f"passwd entry of {name}")

    def names(self, deadline: float) -> list[tuple[str, Lines]]:
        """Every visible account with its plan; rebuilt at most every `listing_ttl` seconds.

        A fresh listing is answered here, without a trip through the reader
        threads, so it is there even while they are all stuck.
        """
        with self._listing_lock:
            built, listing = self._listing
            if time.monotonic() - built < self.listing_ttl:
                return listing
        return self._offload.call(self._names, deadline, "passwd listing")

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
        return account_record(account, self._files(account, verbose=True))

    def _names(self) -> list[tuple[str, Lines]]:
        with self._listing_lock:
            built, listing = self._listing
            if time.monotonic() - built < self.listing_ttl:
                return listing
            accounts = [Account.from_pwd(entry) for entry in pwd.getpwall()]
            listing = sorted(
                (account.login, self._files(account, verbose=False).plan or ())
                for account in accounts
                if self._visible(account)
            )
            self._listing = (time.monotonic(), listing)
            return listing

    def _visible(self, account: Account) -> bool:
        return is_listed(account, self.min_uid, self.deny) and not home_file_exists(account.home, ".nofinger")

    def _files(self, account: Account, verbose: bool) -> HomeFiles:
        def read(name: str) -> Lines | None:
            data = read_home_file(account.home, name, account.uid, self.file_limit)
            return None if data is None else text_lines(data, self.file_limit)

        if not verbose:
            return HomeFiles(plan=read(".plan"))
        return HomeFiles(plan=read(".plan"), project=read(".project"), pgpkey=read(".pgpkey"))
