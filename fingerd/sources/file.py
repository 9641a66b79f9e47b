"""The ``file`` source: the status file's user table, answered from memory."""

from __future__ import annotations

from fingerd.sources.base import Lines, Record, status_record
from fingerd.users.table import UserTable


class FileSource:
    """Statuses from the status file (docs/status-file.md); never blocks."""

    name = "file"
    blocking = False

    def __init__(self, table: UserTable) -> None:
        self.table = table

    def lookup(self, name: str, deadline: float = 0.0) -> Record | None:
        found = self.table.snapshot().lookup(name)
        return None if found is None else status_record(*found)

    def names(self, deadline: float = 0.0) -> list[tuple[str, Lines]]:
        return sorted(self.table.snapshot().users.items())

    def who(self, deadline: float = 0.0) -> None:
        """Statuses only: who is logged in is not known here."""
        return None

    def start(self) -> None:
        """No threads of its own."""

    def alive(self) -> bool:
        return True

    def cancel(self) -> None:
        """Nothing waits: the table is in memory."""

    def stop(self, deadline: float) -> None:
        """No threads of its own."""
