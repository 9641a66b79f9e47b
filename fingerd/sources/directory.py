"""The directory: the configured sources asked in order (docs/sources.md, "Sources").

Every service looks names up here, so a name means the same thing on
finger, the web view, JSON, XML-RPC and IRC.  The first source that knows a
name answers.  A source that fails is logged and skipped; when no source
knows the name and one of them failed, the answer says the lookup failed
rather than "No such user", which would be a lie.

A lookup has one deadline, shared by every source it asks: a source gets
what is left of it, and once it has passed the remaining sources are not
asked at all, so a query never takes longer than the deadline however many
slow sources are configured.  A source that says a name is hidden ends the
lookup there, as if nobody knew the name.

``wait=False`` asks without blocking: the answer comes only from the
sources that live in memory, or is None when a source that may block would
have to be asked.  The finger service answers that way on its accepting
thread and starts a thread for the rest.

When the daemon's stop reaches its cut-off, shortly before its deadline,
`cancel` makes every source fail what still waits on it: those lookups end
"failed", and their clients are told to try again before the daemon exits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from fingerd.protocol import is_valid_name
from fingerd.render import visible
from fingerd.sources.base import Hidden, Lines, Record, Source, SourceError, WhoIsOn
from fingerd.users.table import UserTable

log = logging.getLogger("fingerd.sources")

Listing = list[tuple[str, Lines]]


@dataclass(frozen=True)
class Lookup:
    """The outcome of asking the sources for one name."""

    record: Record | None
    failed: tuple[str, ...] = ()


class Directory:
    """The `--source` list, in order, and the user table whose generation names its state."""

    def __init__(self, sources: Sequence[Source], table: UserTable, timeout: float = 10.0, lists: bool = True) -> None:
        self.sources = tuple(sources)
        self.table = table
        self.timeout = timeout
        self.lists = lists

    def generation(self) -> int:
        """Changes whenever an answer given without waiting could change."""
        return self.table.snapshot().generation

    def lookup(self, name: str, wait: bool = True, deadline: float | None = None) -> Lookup | None:
        """Ask the sources for ``name`` until ``deadline`` (`time.monotonic`; default `timeout` from now).

        Returns None only when ``wait`` is False and a blocking source is next.
        """
        if not is_valid_name(name):
            return Lookup(None)
        deadline = self.deadline(deadline)
        failed: list[str] = []
        for source in self.sources:
            if source.blocking and not wait:
                return None
            if source.blocking and time.monotonic() >= deadline:
                log.warning("no time left to ask source %s for %s", source.name, name)
                failed.append(source.name)
                continue
            try:
                record = source.lookup(name, deadline)
            except Hidden:
                return Lookup(None)
            except SourceError as error:
                log.warning("source %s failed for %s: %s", source.name, name, visible(str(error)))
                failed.append(source.name)
                continue
            except Exception:
                log.exception("source %s failed for %s", source.name, name)
                failed.append(source.name)
                continue
            if record is not None:
                return Lookup(record)
        return Lookup(None, tuple(failed))

    def listing(self, wait: bool = True, deadline: float | None = None, without: str = "") -> Listing | None:
        """Everyone the listing sources know, sorted by name; the first source to list a name wins.

        Empty with ``--no-list-users`` (``lists`` False): who the users are,
        and who of them is logged in, is what that option keeps private, on
        the web view and over XML-RPC as on finger.  ``without`` names a
        source left out (the one whose sessions table heads a finger list).
        """
        if not self.lists:
            return []
        deadline = self.deadline(deadline)
        merged: dict[str, Lines] = {}
        for source in self.sources:
            if source.name == without:
                continue
            if source.blocking and not wait:
                return None
            for name, status in self._names(source, deadline):
                merged.setdefault(name, status)
        return sorted(merged.items())

    def who(self, wait: bool = True, deadline: float | None = None) -> WhoIsOn | None:
        """The sessions table of the first source that knows who is logged in (passwd); None when none does.

        None with ``--no-list-users``, as `listing` is empty.
        """
        if not self.lists:
            return None
        deadline = self.deadline(deadline)
        for source in self.sources:
            if source.blocking and not wait:
                continue
            try:
                table = source.who(deadline)
            except SourceError as error:
                log.warning("source %s cannot tell who is logged in: %s", source.name, visible(str(error)))
                continue
            except Exception:
                log.exception("source %s cannot tell who is logged in", source.name)
                continue
            if table is not None:
                return table
        return None

    def deadline(self, deadline: float | None) -> float:
        """``deadline``, or `timeout` from now when it is None."""
        return time.monotonic() + self.timeout if deadline is None else deadline

    @staticmethod
    def _names(source: Source, deadline: float) -> Sequence[tuple[str, Lines]]:
        try:
            return source.names(deadline) or ()
        except SourceError as error:
            log.warning("source %s cannot list: %s", source.name, visible(str(error)))
        except Exception:
            log.exception("source %s cannot list", source.name)
        return ()

    def start(self) -> None:
        """Start the threads some sources keep (the web source's fetches, passwd's reads)."""
        for source in self.sources:
            source.start()

    def alive(self) -> bool:
        """False when a source's thread died: the daemon should exit."""
        return all(source.alive() for source in self.sources)

    def cancel(self) -> None:
        """Make every source fail the lookups still waiting on it, at once."""
        for source in self.sources:
            source.cancel()

    def stop(self, deadline: float) -> None:
        """Stop every source, joining its threads until ``deadline``."""
        for source in self.sources:
            source.stop(deadline)
