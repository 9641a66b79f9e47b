"""Making text safe to send: pure functions from text or bytes to reply bytes.

RFC 1288 section 3.3 warns that finger output has been used to attack the
terminals of the people reading it.  Every byte this daemon sends passes
through `reply_bytes`, so the rule lives in one place:

* each line ends in CR LF, whatever the source used;
* C0 controls except TAB, and DEL, are shown as ``^X`` (ESC becomes ``^[``,
  so an escape sequence arrives as harmless text);
* C1 controls are shown as ``\\xNN``;
* Unicode line and paragraph separators and the bidirectional embedding,
  override and isolate marks are shown as ``\\uNNNN``, so no reply can move
  the cursor, break a line, or reorder what the reader sees;
* bytes that are not valid UTF-8 are shown as ``\\xNN``.
"""

from __future__ import annotations

from collections.abc import Iterable

TAB = 0x09
_BIDI_AND_SEPARATORS = (
    [0x061C, 0x200E, 0x200F, 0x2028, 0x2029]
    + list(range(0x202A, 0x202F))
    + list(range(0x2066, 0x206A))
)


def _build_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0x20):
        if code != TAB:
            table[code] = "^" + chr(code + 0x40)
    table[0x7F] = "^?"
    for code in range(0x80, 0xA0):
        table[code] = f"\\x{code:02x}"
    for code in _BIDI_AND_SEPARATORS:
        table[code] = f"\\u{code:04x}"
    return table


_VISIBLE = _build_table()
_HIDDEN: dict[int, None] = dict.fromkeys(_VISIBLE)


def visible(text: str) -> str:
    """Return ``text`` with every unsafe character in a visible form."""
    text = text.translate(_VISIBLE)
    if text.isascii():
        return text
    # Lone surrogates cannot be encoded; they only come from odd decoders.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def printable(text: str) -> str:
    """Return ``text`` without the characters `visible` would escape.

    This is the filter RFC 1288 section 3.3 asks of clients: a reader who
    wants a clean screen rather than a record of what was sent.
    """
    text = text.translate(_HIDDEN)
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def visible_bytes(data: bytes) -> str:
    """Decode bytes from outside (a query, a relayed reply) for display."""
    return visible(data.decode("utf-8", "backslashreplace"))


def reply_bytes(lines: Iterable[str]) -> bytes:
    """Join reply lines into wire bytes: visible text, CR LF after each."""
    return "".join(visible(line) + "\r\n" for line in lines).encode("utf-8")
