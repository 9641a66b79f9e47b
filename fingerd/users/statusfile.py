"""The status file format (docs/status-file.md, "Format"): bytes in, a table of statuses out.

::

    # comments and blank lines are ignored
    alice: Writing the finger daemon
    bob: Out to lunch
    carol:
     a plan of several lines, each after exactly one space or tab,
       keeps any further indentation, so ASCII art survives

The parser is pure and total: it never raises, it reports each malformed line
with its number and goes on, so one bad line costs one entry, never the file.
Lines are split on ``\\n`` only; ``str.splitlines`` would also split on form
feeds and Unicode separators that a status may legitimately contain.

One status is at most `MAX_STATUS_BYTES`, as a ``~/.plan`` is: every reply
and listing copies it, so a 10 MB line would cost every reader 10 MB.  A
longer one is cut there, a marker line says so, and the cut is reported.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from fingerd.protocol import is_valid_name

BOM = "\ufeff".encode("utf-8")
DEFAULT_PATH = "/var/lib/fingerd/status"
"""Where the status file is unless configured: the daemon's default, and ``fingerd edit``'s."""
MAX_STATUS_BYTES = 64 * 1024
LINES_PIECE = 1 << 16
"""Characters of the file split into lines at once (see `lines_of`)."""

Status = tuple[str, ...]
"""A status: its lines, first line first, never empty lines at either end."""


@dataclass
class Problem:
    """One line the parser skipped or doubted, for the log."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ParsedFile:
    """What a status file said: the statuses, and what was wrong with it."""

    users: dict[str, Status] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    invalid_utf8: bool = False


def decode(data: bytes) -> tuple[str, bool]:
    """Decode as UTF-8, replacing invalid bytes; say whether any were."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace"), True


def truncated_marker(limit: int) -> str:
    """The line that ends a cut status, worded as for a cut ``~/.plan``."""
    return f"[truncated at {_size_text(limit)}]"


def _size_text(limit: int) -> str:
    return f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _utf8_head(text: str, size: int) -> str:
    """The longest start of ``text`` that is at most ``size`` bytes in UTF-8, never half a character."""
    return text[:size].encode("utf-8")[:size].decode("utf-8", "ignore")


def lines_of(text: str, piece: int = LINES_PIECE) -> Iterator[str]:
    """``text.split("\\n")``, split a piece of about ``piece`` characters at a time.

    Splitting a 100,000-line file at once is one call of 7 ms that holds
    the GIL, and a query answered meanwhile waits for it; a piece of 64 Ki
    characters takes a fraction of a millisecond.
    """
    start = 0
    while (end := text.find("\n", start + piece)) >= 0:
        yield from text[start:end].split("\n")
        start = end + 1
    yield from text[start:].split("\n")


def _entry(entries: dict[str, _Entry | str], name: str, limit: int) -> _Entry:
    """``name``'s entry as an `_Entry`, made from its one line if it was kept as text so far."""
    entry = entries[name]
    if isinstance(entry, str):
        text, entry = entry, _Entry(name, limit)
        entry.add(text)
        entries[name] = entry
    return entry


class _Entry:
    """One user's status as its lines arrive, kept within a byte limit.

    Blank lines wait in ``gap`` until a line with text follows them, because
    blank lines at either end are dropped: so the size counted is that of
    the status as served (its lines joined by ``\\n``), and a status within
    the limit is kept whole.  Past the limit nothing more is kept, so a huge
    entry costs the table no more than the limit.
    """

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.lines: list[str] = []
        self.size = 0
        self.gap: list[str] = []
        self.gap_size = 0
        self.cut = False

    def add(self, line: str) -> bool:
        """Take the next line; True when it is the one that passes the limit."""
        if self.cut:
            return False
        if not line.strip():
            if self.lines and self.size + self.gap_size <= self.limit:
                self.gap.append(line)
                self.gap_size += _utf8_size(line) + 1
            return False
        before = self.size + self.gap_size + (1 if self.lines else 0)
        after = before + _utf8_size(line)
        if after <= self.limit:
            self.lines.extend(self.gap)
            self.lines.append(line)
            self.size = after
        else:
            self.cut = True
            if before < self.limit:
                head = _utf8_head(line, self.limit - before)
                if head.strip():
                    self.lines.extend(self.gap)
                    self.lines.append(head)
        self.gap, self.gap_size = [], 0
        return self.cut

    def cut_problem(self, number: int) -> Problem:
        """What to log about the cut, on the line that made it."""
        return Problem(number, f"status of {self.name} longer than {_size_text(self.limit)}; cut here")

    def status(self) -> Status:
        """The lines kept, then the marker if the status was cut."""
        if self.cut:
            return (*self.lines, truncated_marker(self.limit))
        return tuple(self.lines)


def parse_status_file(data: bytes, limit: int = MAX_STATUS_BYTES) -> ParsedFile:
    """Parse the whole file; later entries for the same name win.

    A status longer than ``limit`` bytes is cut (see `_Entry`) and reported
    on the line where it passed the limit.  A one-line status (nearly all
    of them) is kept as its text until the end, not as an `_Entry`: 100,000
    objects living through the parse would make the garbage collector walk
    them all, again and again, while holding the GIL (a lookup made
    meanwhile waited up to 99 ms for it; without them, 14 ms).
    """
    text, invalid = decode(data)
    result = ParsedFile(invalid_utf8=invalid)
    if text.startswith("\ufeff"):
        text = text[1:]
    entries: dict[str, _Entry | str] = {}
    current: str | None = None
    for number, line in enumerate(lines_of(text), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line or line.startswith("#"):
            continue
        if line[0] in " \t":
            if current is None:
                result.problems.append(Problem(number, "continuation line with no user before it"))
                continue
            entry = _entry(entries, current, limit)
            if entry.add(line[1:]):
                result.problems.append(entry.cut_problem(number))
            continue
        name, colon, status = line.partition(":")
        name = name.strip()
        current = None
        if not colon:
            result.problems.append(Problem(number, "no colon: expected 'name: status'"))
            continue
        if not is_valid_name(name):
            result.problems.append(Problem(number, f"not a valid user name: {name[:40]!r}"))
            continue
        if name in entries:
            result.problems.append(Problem(number, f"{name} listed again; this entry wins"))
        current = name
        status = status.strip()
        if status and _utf8_size(status) <= limit:
            entries[name] = status
            continue
        entry = entries[name] = _Entry(name, limit)
        if entry.add(status):
            result.problems.append(entry.cut_problem(number))
    result.users = {name: (entry,) if isinstance(entry, str) else entry.status() for name, entry in entries.items()}
    return result


def format_entry(name: str, status: Sequence[str]) -> bytes:
    """The lines of one entry, such that parsing them gives back ``status``.

    A one-line status whose text has no leading space is written on the
    name's line; anything else goes on continuation lines, one space each,
    so leading spaces and blank lines inside the status survive.
    """
    if len(status) == 1 and status[0] == status[0].strip():
        return f"{name}: {status[0]}\n".encode("utf-8")
    lines = [f"{name}:"] + [f" {line}" for line in status]
    return ("\n".join(lines) + "\n").encode("utf-8")


def replace_entry(data: bytes, name: str, status: Sequence[str] | None) -> bytes:
    """Put ``name``'s status into the file's bytes; None removes the entry.

    Every other line (comments, blank lines, malformed lines, other users,
    their order) is kept byte for byte.  The entry takes the place of the
    user's first entry, and later entries for the same name go, so the file
    says one thing; a new user is appended at the end.
    """
    lines = data.split(b"\n")
    trailing = lines and lines[-1] == b""
    if trailing:
        lines.pop()
    kept: list[bytes] = []
    placed = False
    owned = False
    for number, line in enumerate(lines):
        text = line.rstrip(b"\r")
        if number == 0:
            text = text.removeprefix(BOM)
        if owned and text[:1] in (b" ", b"\t"):
            continue
        if _entry_name(text) == name:
            owned = True
            if not placed and status is not None:
                kept.extend(format_entry(name, status).rstrip(b"\n").split(b"\n"))
            placed = True
            continue
        if text and not text.startswith(b"#"):
            owned = False
        kept.append(line)
    if status is not None and not placed:
        kept.extend(format_entry(name, status).rstrip(b"\n").split(b"\n"))
        trailing = True
    result = b"\n".join(kept)
    if trailing and kept:
        result += b"\n"
    return result


def _entry_name(line: bytes) -> str | None:
    """The user a raw line starts an entry for, or None."""
    if not line or line[:1] in (b" ", b"\t", b"#"):
        return None
    name, colon, _ = line.partition(b":")
    if not colon:
        return None
    try:
        return name.strip().decode("utf-8")
    except UnicodeDecodeError:
        return None
