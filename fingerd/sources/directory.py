"""The directory: the configured sources asked in order (README, "Sources").

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

When the daemon stops, `stop` lets lookups in progress finish until its
cut-off, then stops every source, which makes what is still waiting fail
at once: those lookups end "failed", and their clients are told to try
again, before the daemon's exit deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from fingerd.protocol import is_valid_name
from fingerd.render import visible
from fingerd.sources.base import Hidden, Lines, Record, Source, SourceError
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

    def __init__(self, sources: Sequence[Source], table: UserTable, timeout: float = 10.0) -> None:
        self.sources = tuple(sources)
        self.table = table
        self.timeout = timeout
        self._busy = 0
        self._idle = threading.Condition()
        self._stopped = False

    def generation(self) -> int:
        """Changes whenever an answer given without waiting could change."""
        return self.table.snapshot().generation

    def lookup(self, name: str, wait: bool = True, deadline: float | None = None) -> Lookup | None:
        """Ask the sources for ``name`` until ``deadline`` (`time.monotonic`; default `timeout` from now).

        Returns None only when ``wait`` is False and a blocking source is next.
        """
        if not is_valid_name(name):
            return Lookup(None)
        with self._counted(wait):
            return self._lookup(name, wait, self.deadline(deadline))

    def _lookup(self, name: str, wait: bool, deadline: float) -> Lookup | None:
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

    def listing(self, wait: bool = True, deadline: float | None = None) -> Listing | None:
        """Everyone the listing sources know, sorted by name; the first source to list a name wins."""
        with self._counted(wait):
            return self._listing(wait, self.deadline(deadline))

    def _listing(self, wait: bool, deadline: float) -> Listing | None:
        merged: dict[str, Lines] = {}
        for source in self.sources:
            if source.blocking and not wait:
                return None
            for name, status in self._names(source, deadline):
                merged.setdefault(name, status)
        return sorted(merged.items())

    def deadline(self, deadline: float | None) -> float:
        """``deadline``, or `timeout` from now when it is None."""
        return time.monotonic() + self.timeout if deadline is None else deadline

    @contextmanager
    def _counted(self, wait: bool) -> Iterator[None]:
        """Count a lookup that may wait, so that `stop` can wait for it (one from memory is over at once)."""
        if not wait:
            yield
            return
        with self._idle:
            self._busy += 1
        try:
            yield
        finally:
            with self._idle:
                self._busy -= 1
                if not self._busy:
                    self._idle.notify_all()

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

    def stop(self, deadline: float, cutoff: float | None = None) -> None:
        """Let lookups in progress run until ``cutoff``, then stop every source by ``deadline``.

        A source stops by failing what still waits on it, so the lookups
        left end at once, "failed".  A second call does nothing.
        """
        if self._stopped:
            return
        self._stopped = True
        with self._idle:
            self._idle.wait_for(lambda: not self._busy, max(0.0, (cutoff or deadline) - time.monotonic()))
        for source in self.sources:
            source.stop(deadline)
