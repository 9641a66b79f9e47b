"""``fingerd set``: set your status through the daemon's Unix socket.

Standard library only, so it runs under any Python 3 on the host, not just
the daemon's environment.  It finds the socket as the daemon was told it:
``--socket``, then ``$FINGERD_SETTER_SOCKET``, then ``setter-socket`` in the
daemon's config file (``-c FILE``, else /etc/fingerd.conf when readable),
then the default.  Exit status: 0 done, 1 refused by the daemon, 2 bad
usage, 3 the daemon could not be reached.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from fingerd.config_file import DEFAULT_CONFIG, ConfigFileError, setting
from fingerd.setter.protocol import MAX_STATUS_BYTES

DEFAULT_SOCKET = "/run/fingerd/setter.sock"
ENVIRONMENT_KEY = "FINGERD_SETTER_SOCKET"
TIMEOUT = 15.0
REFUSED, USAGE, UNREACHABLE = 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    """The options of ``fingerd set``."""
    parser = argparse.ArgumentParser(
        prog="fingerd set",
        description="Set your finger status. Without MESSAGE, the status is read from standard input.",
        allow_abbrev=False,
    )
    parser.add_argument("message", nargs="*", help="the new status (words are joined by spaces)")
    parser.add_argument("--for", dest="name", default="", metavar="NAME", help="whose status (root only)")
    parser.add_argument("--clear", action="store_true", help="remove your entry")
    parser.add_argument(
        "--socket",
        metavar="PATH",
        help=f"the daemon's setter socket (default: ${ENVIRONMENT_KEY}, the config's setter-socket, {DEFAULT_SOCKET})",
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"the daemon's config file, for its setter-socket (default: {DEFAULT_CONFIG}, when readable)",
    )
    return parser


def find_socket(options: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The setter socket, chosen the way the daemon chooses it: option, environment, config file, default."""
    try:
        value = setting("setter-socket", options.socket, environ, options.config)
    except ConfigFileError as error:
        raise UsageError(str(error)) from None
    if value == "":
        raise UsageError(f"the daemon has no setter socket: setter-socket is empty in {options.config or DEFAULT_CONFIG}")
    return value or DEFAULT_SOCKET


class UsageError(Exception):
    """Something the user must change before asking again."""


def build_request(options: argparse.Namespace, stdin: TextIO) -> bytes:
    """The request bytes (see fingerd.setter.protocol)."""
    if options.clear:
        return f"CLEAR {options.name}".strip().encode() + b"\n"
    if options.message:
        status = " ".join(options.message).encode("utf-8", "surrogateescape")
    else:
        if stdin.isatty():
            print("Type your status; end with Ctrl-D.", file=sys.stderr)
        status = stdin.buffer.read(MAX_STATUS_BYTES + 1)
    if len(status) > MAX_STATUS_BYTES:
        raise UsageError(f"status too long: at most {MAX_STATUS_BYTES} bytes")
    return f"SET {len(status)} {options.name}".strip().encode() + b"\n" + status


def send(path: str, request: bytes) -> str:
    """Send one request over the socket; the daemon's one-line reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(path)
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    return reply.decode("utf-8", "replace").strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.clear and options.message:
        parser.error("--clear takes no message")
    try:
        path = find_socket(options, os.environ)
    except UsageError as error:
        print(f"fingerd set: {error}", file=sys.stderr)
        return USAGE
    try:
        request = build_request(options, sys.stdin)
    except UsageError as error:
        print(f"fingerd set: {error}", file=sys.stderr)
        return REFUSED
    try:
        reply = send(path, request)
    except FileNotFoundError:
        print(f"fingerd set: the finger daemon is not running (no socket at {path})", file=sys.stderr)
        return UNREACHABLE
    except ConnectionRefusedError:
        print(f"fingerd set: stale socket at {path}: the finger daemon is not running", file=sys.stderr)
        return UNREACHABLE
    except OSError as error:
        print(f"fingerd set: cannot reach the finger daemon at {path}: {error.strerror or error}", file=sys.stderr)
        return UNREACHABLE
    if reply.startswith("OK"):
        print(reply[3:].strip() or "OK")
        return 0
    print(f"fingerd set: {reply.removeprefix('ERROR').strip() or 'no answer'}", file=sys.stderr)
    return REFUSED
