"""RFC 1288 query parsing: bytes from the wire in, a `Query` out.

The grammar of RFC 1288 section 2.3 is small::

    {Q1} ::= [{W}|{W}{S}{U}]{C}          local query
    {Q2} ::= [{W}{S}][{U}]{H}{C}         forwarding query
    {H}  ::= @hostname | @hostname{H}

This module turns one raw line into a `Query` and never raises: whatever
arrives, the caller gets a value it can answer.  Nothing here looks anything
up, opens anything or runs anything; the query is data, never an option, a
path or a command.

The line is read leniently, as most finger daemons do: a bare LF ends it as
well as CRLF, ``/W`` may be written ``/w`` and may touch the name, and spaces
around the parts are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

MAX_QUERY_BYTES = 1024
"""Longest query line accepted, not counting its CR LF (docs/behavior.md, "Reading the query")."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
"""What a user name may look like; anything else is nobody (docs/status-file.md, "Format")."""


class Kind(Enum):
    """What the client asked for."""

    LIST = "list"
    USER = "user"
    FORWARD = "forward"
    TOO_LONG = "too-long"


@dataclass(frozen=True)
class Query:
    """One parsed query line.

    ``name`` is the user part as text (invalid UTF-8 kept as ``\\xNN``);
    ``hosts`` is the ``@host`` chain left to right, for ``Kind.FORWARD``.
    """

    kind: Kind
    verbose: bool = False
    name: str = ""
    hosts: tuple[str, ...] = ()


def is_valid_name(name: str) -> bool:
    """True when ``name`` could be an account name worth looking up."""
    return NAME_PATTERN.fullmatch(name) is not None


def split_line(data: bytes) -> tuple[bytes, bool]:
    """Cut the first line out of received bytes.

    Returns the line without its CR LF or LF, and whether a line end was
    seen.  Without one, the whole buffer is the line (a client that
    half-closes without a newline is still answered).
    """
    end = data.find(b"\n")
    if end < 0:
        line, complete = data, False
    else:
        line, complete = data[:end], True
    if line.endswith(b"\r"):
        line = line[:-1]
    return line, complete


def first_line(data: bytes) -> bytes | None:
    """The first line of ``data`` (see `split_line`), or None once it is proven longer than `MAX_QUERY_BYTES`."""
    line, complete = split_line(data)
    if complete:
        return None if len(line) > MAX_QUERY_BYTES else line
    # Without a line end yet, a trailing CR may still belong to CR LF.
    return None if len(data) - data.endswith(b"\r") > MAX_QUERY_BYTES else line


def line_is_too_long(data: bytes) -> bool:
    """True once ``data`` proves the first line exceeds `MAX_QUERY_BYTES`."""
    return first_line(data) is None


def parse_query(line: bytes) -> Query:
    """Read one query line (without its line end) into a `Query`."""
    if len(line) > MAX_QUERY_BYTES:
        return Query(Kind.TOO_LONG)
    text = line.decode("utf-8", "backslashreplace").strip(" \t")
    verbose = False
    if text[:2] in ("/W", "/w"):
        verbose = True
        text = text[2:].lstrip(" \t")
    if "@" in text:
        name, _, chain = text.partition("@")
        hosts = tuple(host.strip(" \t") for host in chain.split("@"))
        return Query(Kind.FORWARD, verbose, name.rstrip(" \t"), hosts)
    if not text:
        return Query(Kind.LIST, verbose)
    return Query(Kind.USER, verbose, text)
