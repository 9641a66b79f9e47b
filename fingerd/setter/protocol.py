"""The setter's wire format and the rules for a status: bytes in, a request out.

Over the Unix socket a client sends one request and half-closes::

    SET <name>\\n<status text until EOF>
    CLEAR <name>\\n

``<name>`` may be empty, meaning the connecting user.  The reply is one
line, ``OK <what was done>`` or ``ERROR <why>``.  The tutorial's TCP setter
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
    if len(lines) > MAX_STATUS_LINES:
        raise SetterError(f"status too long: at most {MAX_STATUS_LINES} lines")
    for number, line in enumerate(lines, start=1):
        found = FORBIDDEN.search(line)
        if found:
            raise SetterError(f"control character U+{ord(found.group()):04X} on line {number}; not stored")
    return tuple(lines)


def parse_socket_request(data: bytes) -> tuple[str, SetRequest]:
    """Read a Unix-socket request: (the name asked for, or '' for oneself; the request)."""
    head, newline, body = data.partition(b"\n")
    verb, _, name_bytes = head.rstrip(b"\r").partition(b" ")
    name = name_bytes.decode("utf-8", "replace").strip()
    if name and not is_valid_name(name):
        raise SetterError(f"not a valid user name: {name[:40]!r}")
    if verb == b"SET" and newline:
        return name, SetRequest(name, parse_status(body))
    if verb == b"CLEAR":
        return name, SetRequest(name, None)
    raise SetterError("expected 'SET <name>' or 'CLEAR <name>' on the first line")


def parse_tcp_request(data: bytes) -> SetRequest:
    """Read the tutorial's request: the name on line 1, the status on line 2."""
    lines = data.split(b"\n")
    if len(lines) < 2:
        raise SetterError("expected a name line and a status line")
    name = lines[0].rstrip(b"\r").decode("utf-8", "replace").strip()
    if not is_valid_name(name):
        raise SetterError(f"not a valid user name: {name[:40]!r}")
    return SetRequest(name, parse_status(lines[1].rstrip(b"\r")))
