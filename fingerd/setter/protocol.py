"""The setter's wire format and the rules for a status: bytes in, a request out.

Over the Unix socket a client sends one request and half-closes::

    SET <length> <name>\\n<status text, <length> bytes>
    CLEAR <name>\\n

``<name>`` may be empty, meaning the connecting user.  ``<length>`` is
ASCII digits only (`parse_length`): `str.isdigit` and `int` also take
other scripts' digits (``٣`` is 3) and superscripts (``²``, which `int`
then refuses with an exception).  The reply is one line,
``OK <what was done>`` or ``ERROR <why>``.  The tutorial's TCP setter
sends a bare name line and a status line instead; both end up as a
`SetRequest`.

A status is UTF-8 text of at most `MAX_STATUS_BYTES` and `MAX_STATUS_LINES`
lines.  Control characters are refused rather than stored escaped: the
file stays readable, and the user learns at once why their status looks
wrong, instead of finding ``^[`` in it later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fingerd.protocol import is_valid_name

MAX_STATUS_BYTES = 8192
MAX_STATUS_LINES = 100
MAX_REQUEST_BYTES = MAX_STATUS_BYTES + 128
LENGTH = re.compile(r"[0-9]{1,12}", re.ASCII)
FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


class SetterError(Exception):
    """A request the setter refuses; the message goes back to the client."""


@dataclass(frozen=True)
class SetRequest:
    """Set (``status`` is a tuple of lines) or clear (``status`` is None) a user's entry."""

    name: str
    status: tuple[str, ...] | None


def parse_status(data: bytes) -> tuple[str, ...]:
    """Check and split a status as sent; raise `SetterError` if it breaks a rule."""
    if len(data) > MAX_STATUS_BYTES:
        raise SetterError(f"status too long: at most {MAX_STATUS_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SetterError("status is not UTF-8 text") from None
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise SetterError("empty status; use --clear to remove your entry")
    if len(lines) > MAX_STATUS_LINES:
        raise SetterError(f"status too long: at most {MAX_STATUS_LINES} lines")
    for number, line in enumerate(lines, start=1):
        found = FORBIDDEN.search(line)
        if found:
            raise SetterError(f"control character U+{ord(found.group()):04X} on line {number}; not stored")
    return tuple(lines)


def _head(data: bytes) -> tuple[list[str], bytes] | None:
    head, newline, body = data.partition(b"\n")
    if not newline:
        return None
    return head.rstrip(b"\r").decode("utf-8", "replace").split(), body


def parse_length(word: str) -> int | None:
    """A status length, 1 to 12 ASCII digits; None for anything else.

    A length past `MAX_STATUS_BYTES` is still read as a number: the
    request is then complete at once and refused as too long, instead of
    being waited for until the read cap.
    """
    return int(word) if LENGTH.fullmatch(word) else None


def socket_request_complete(data: bytes) -> bool:
    """True once ``data`` holds a whole socket request (the server stops reading)."""
    parsed = _head(data)
    if parsed is None:
        return False
    words, body = parsed
    length = parse_length(words[1]) if words[:1] == ["SET"] and len(words) >= 2 else None
    if length is not None and length <= MAX_STATUS_BYTES:
        return len(body) >= length
    return True


def parse_socket_request(data: bytes) -> SetRequest:
    """Read a whole Unix-socket request; the name is '' for the connecting user."""
    parsed = _head(data)
    if parsed is None:
        raise SetterError("incomplete request")
    words, body = parsed
    verb, arguments = (words[0], words[1:]) if words else ("", [])
    length = parse_length(arguments[0]) if arguments else None
    if verb == "SET" and length is not None and len(arguments) <= 2:
        if length > MAX_STATUS_BYTES:
            raise SetterError(f"status too long: at most {MAX_STATUS_BYTES} bytes")
        if len(body) < length:
            raise SetterError("incomplete request: the status was cut short")
        return SetRequest(_name(arguments[1:]), parse_status(body[:length]))
    if verb == "CLEAR" and len(arguments) <= 1:
        return SetRequest(_name(arguments), None)
    raise SetterError("expected 'SET <length> [<name>]' or 'CLEAR [<name>]' on the first line")


def _name(arguments: list[str]) -> str:
    name = arguments[0] if arguments else ""
    if name and not is_valid_name(name):
        raise SetterError(f"not a valid user name: {name[:40]!r}")
    return name


def tcp_request_complete(data: bytes) -> bool:
    return data.count(b"\n") >= 2


def parse_tcp_request(data: bytes) -> SetRequest:
    """Read the tutorial's request: a name line and a status line, both ended."""
    lines = data.split(b"\n")
    if len(lines) < 3:
        raise SetterError("expected a name line and a status line, each ended by a newline")
    name = lines[0].rstrip(b"\r").decode("utf-8", "replace").strip()
    if not is_valid_name(name):
        raise SetterError(f"not a valid user name: {name[:40]!r}")
    return SetRequest(name, parse_status(lines[1].rstrip(b"\r")))
