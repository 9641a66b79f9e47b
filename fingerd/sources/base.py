"""The source interface, and the record every source answers with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

Lines = tuple[str, ...]

NO_PLAN = "No Plan."


@dataclass(frozen=True)
class Presence:
    """Whether a user is logged in now, for the web view and JSON; only sources that know say (passwd).

    ``idle_seconds`` is that of the user's least idle session, and
    ``since`` (seconds since the epoch) the start of the earliest one.
    """

    online: bool
    idle_seconds: int | None = None
    since: float | None = None


@dataclass(frozen=True)
class WhoIsOn:
    """Who is logged in: each one's presence, and the sessions table a source puts at the top of the user list.

    ``heads_list`` is False when the operator asked for every account in
    the list instead (``--list-all-accounts``): the table is then left
    out of it, and ``presence`` still says who is on.
    """

    names: frozenset[str]
    lines: Lines
    presence: tuple[tuple[str, Presence], ...] = ()
    heads_list: bool = True
    source: str = ""


@dataclass(frozen=True)
class Record:
    """What one source knows about one user.

    ``status`` is what the web view, JSON, XML-RPC and IRC show; ``short``
    and ``verbose`` are the finger replies to ``name`` and ``/W name``.  Each
    source lays out its own finger replies because only it knows which
    fields it has (an account has a shell, a status line has not).
    """

    name: str
    status: Lines
    short: Lines
    verbose: Lines
    presence: Presence | None = None


class SourceError(Exception):
    """A source could not answer (timeout, crash, upstream error): ask the next one."""


class Hidden(Exception):
    """The source knows the name and must not show it (``~/.nofinger``, a system account).

    The lookup ends there, answered like a name nobody knows: asking the
    next source could show what this one hides.
    """


class Source(Protocol):
    """A place statuses come from.

    ``blocking`` is False only for sources that answer from memory: those the
    finger service may ask on its accepting thread.
    """

    name: str
    blocking: bool

    def lookup(self, name: str, deadline: float) -> Record | None:
        """The record for a valid user name, None when unknown.

        Raises SourceError when it cannot tell by ``deadline`` (a
        `time.monotonic` value), Hidden when the name must stay unknown.
        """

    def names(self, deadline: float) -> Sequence[tuple[str, Lines]] | None:
        """Every user this source would list, with their status; None when it cannot list."""

    def who(self, deadline: float) -> WhoIsOn | None:
        """Who is logged in now, laid out for the top of the user list; None when the source cannot tell."""

    def start(self) -> None:
        """Start any threads of the source's own; called before the first lookup."""

    def alive(self) -> bool:
        """False when a thread of the source has died."""

    def cancel(self) -> None:
        """Fail every lookup still waiting on this source, at once (SourceError).

        Called when the daemon's stop reaches its cut-off, shortly before
        its deadline, so that those queries can still be answered.
        """

    def stop(self, deadline: float) -> None:
        """Cancel what is left and join the source's own threads until ``deadline``."""


def status_record(name: str, status: Lines) -> Record:
    """The record of a plain status (the status file, a command, a URL).

    The short reply is the status itself, as in the Twisted tutorial; the
    verbose one adds the login line, as classic finger daemons do.
    """
    if not status:
        return Record(name, status, (NO_PLAN,), (f"Login: {name}", NO_PLAN))
    return Record(name, status, status, (f"Login: {name}", "Plan:", *status))


def text_lines(data: bytes, limit: int) -> Lines:
    """Bytes from a file, a program or a URL as status lines.

    Bytes that are not UTF-8 become the text ``\\xNN``, so one bad byte
    costs only itself; trailing blank lines go, and text past ``limit`` bytes
    is cut with a visible marker.
    """
    truncated = len(data) > limit
    text = data[:limit].decode("utf-8", "backslashreplace")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if truncated:
        lines.append(f"[truncated at {limit // 1024} KiB]")
    return tuple(lines)
