"""Where the IRC bot connects: ``--irc-server HOST[:PORT]``, parsed without the `irc` package.

The bot needs the `irc` package, an optional extra (``pip install
'fingerd[irc]'``); the configuration is checked, and this address parsed,
whether or not it is installed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from fingerd.client import parse_host

MISSING = "the IRC bot needs the irc package: pip install 'fingerd[irc]'"


@dataclass(frozen=True)
class IRCServer:
    """Where the bot connects: ``--irc-server HOST[:PORT]``."""

    host: str
    port: int = 6667

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_server(text: str) -> IRCServer:
    """``host``, ``host:port``, ``[v6::addr]:port``; ValueError when malformed."""
    text = text.strip()
    host, port = text, "6667"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise ValueError(f"expected HOST[:PORT], got {text!r}")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"expected HOST[:PORT], got {text!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST[:PORT], got {text!r}")
    return IRCServer(parse_host(host), int(port))


def irc_missing() -> bool:
    """True when the `irc` package cannot be imported here."""
    return importlib.util.find_spec("irc") is None
