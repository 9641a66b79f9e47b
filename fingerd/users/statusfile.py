"""The status file format (README, "The status file"): bytes in, a table of statuses out.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fingerd.protocol import is_valid_name

BOM = "\ufeff".encode("utf-8")

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


def _trim(lines: list[str]) -> Status:
    if len(lines) == 1:
        return (lines[0],) if lines[0] else ()
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return tuple(lines[start:end])


def parse_status_file(data: bytes) -> ParsedFile:
    """Parse the whole file; later entries for the same name win."""
    text, invalid = decode(data)
    result = ParsedFile(invalid_utf8=invalid)
    if text.startswith("\ufeff"):
        text = text[1:]
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line or line.startswith("#"):
            continue
        if line[0] in " \t":
            if current is None:
                result.problems.append(Problem(number, "continuation line with no user before it"))
            else:
                current.append(line[1:])
            continue
        name, colon, status = line.partition(":")
        name = name.strip()
        if not colon:
            result.problems.append(Problem(number, "no colon: expected 'name: status'"))
            current = None
            continue
        if not is_valid_name(name):
            result.problems.append(Problem(number, f"not a valid user name: {name[:40]!r}"))
            current = None
            continue
        if name in entries:
            result.problems.append(Problem(number, f"{name} listed again; this entry wins"))
        current = [status.strip()]
        entries[name] = current
    result.users = {name: _trim(lines) for name, lines in entries.items()}
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
