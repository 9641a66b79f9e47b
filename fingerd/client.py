"""``python -m fingerd.client`` (or ``fingerd query``): ask a finger server and print the reply.

Many systems no longer ship a ``finger`` program; this one needs only the
standard library and this package's `fingerd.render`.  The daemon's
forwarding uses the same code for its one hop (`fingerd.finger.forward`).

Targets, as the classic client and the finger URL scheme write them::

    alice                     alice on localhost, port 79
    alice@host                alice on host
    alice@host:7979           another port
    alice@[::1]:7979          an IPv6 literal, in brackets when a port follows
    @host                     the user list
    alice@host1@host2         host2 is asked to forward the query alice@host1
    finger://host:7979/alice  the same as alice@host:7979 (percent-decoded)

Everything about a target is parsed by pure functions that raise
`ValueError`; the network part is two short functions.  The reply is
filtered as RFC 1288 section 3.3 asks of clients: control characters,
escape sequences, Unicode line separators and bidirectional overrides are
dropped (``--escape`` shows them as ``^[`` and ``\\xNN`` instead), and
bytes that are not UTF-8 become U+FFFD.  ``--ascii`` keeps only printable
7-bit text, the RFC's own default.

Exit status: 0 the reply was printed, 1 another network error, 2 bad
usage, 3 connection refused, 4 timed out, 5 unknown host.
"""

from __future__ import annotations

import argparse
import encodings.idna  # noqa: F401 - getaddrinfo encodes every host name with it; load it before a privilege drop
import ipaddress
import re
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from fingerd.config_file import DEFAULT_CONFIG, ConfigFileError, read_setting
from fingerd.render import printable, visible, visible_bytes

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 79
DEFAULT_TIMEOUT = 10.0
REPLY_LIMIT = 16 * 1024 * 1024
"""Most bytes the command prints; a server that never stops is cut off here (or by the timeout)."""

OK, NETWORK_ERROR, USAGE, REFUSED, TIMED_OUT, UNKNOWN_HOST = 0, 1, 2, 3, 4, 5

URL_SCHEME = "finger://"
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PORT = re.compile(r"[0-9]{1,5}")
_SCOPE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
"""An IPv6 zone (``fe80::1%eth0``): an interface name or number."""
MAX_HOST_NAME = 253

Address = tuple[int, tuple]
"""An address family and a socket address, as `socket.getaddrinfo` gives them."""


# -- targets (pure) ----------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Whom to ask about whom.

    ``host`` and ``port`` are where to connect; ``via`` are the hosts the
    server there is asked to forward through, left to right, as typed.
    """

    name: str = ""
    via: tuple[str, ...] = ()
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    verbose: bool = False

    def query(self) -> bytes:
        """The query line to send, CR LF included (RFC 1288 section 2.3)."""
        text = "@".join((self.name, *self.via))
        if self.verbose:
            text = f"/W {text}".rstrip()
        return text.encode("utf-8") + b"\r\n"

    def where(self) -> str:
        """``host:port`` for messages, IPv6 literals in brackets."""
        return host_port_text(self.host, self.port)


def host_port_text(host: str, port: int) -> str:
    """``host:port``, with an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_port(text: str) -> int:
    """A port number from 1 to 65535, in ASCII digits."""
    if not _PORT.fullmatch(text) or not 0 < int(text) < 65536:
        raise ValueError(f"not a port number: {text!r}")
    return int(text)


def parse_host(text: str) -> str:
    """A host as typed, in canonical form; ValueError when it is no host.

    IP literals are written the standard way (``0:0::1`` becomes ``::1``;
    an IPv6 literal may be in brackets), names are lower-cased without a
    trailing dot.  A name must be letters, digits, ``-`` and ``_`` in dotted
    labels whose last is not all digits: the resolver would read
    ``2130706433`` or ``0x7f.1`` as an IPv4 address (127.0.0.1), which
    would slip past a check on the text.  Names are ASCII, so resolving one
    never loads the IDNA codec.  An IPv6 zone must look like an interface
    name (`ipaddress` would take any text, control characters included).
    """
    if text.startswith("[") and text.endswith("]"):
        try:
            return _ip_literal(text[1:-1], ipaddress.IPv6Address)
        except ValueError:
            raise ValueError(f"not an IPv6 address: {text!r}") from None
    try:
        return _ip_literal(text, ipaddress.ip_address)
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    if (
        len(name) > MAX_HOST_NAME
        or not name.isascii()
        or not _HOST_NAME.fullmatch(name)
        or name.rpartition(".")[2].isdigit()
    ):
        raise ValueError(f"not a host name or address: {text!r}")
    return name.lower()


def _ip_literal(text: str, parse: Callable[[str], object]) -> str:
    _, percent, zone = text.partition("%")
    if percent and not _SCOPE.fullmatch(zone):
        raise ValueError(f"not an IPv6 zone: {zone!r}")
    return str(parse(text))


def split_host_port(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address (no port)."""
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"expected [IPv6 address] or [IPv6 address]:port, got {text!r}")
        host = parse_host(f"[{inner}]")
        return host, parse_port(rest[1:]) if rest else default_port
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return parse_host(host), parse_port(port)
    return parse_host(text), default_port


def check_name(name: str) -> str:
    """The user part of a query: any text without control characters.

    A CR or LF would end the query line early and start another; the
    server decides what a name may look like.
    """
    if visible(name) != name:
        raise ValueError(f"the name holds control characters: {visible(name)!r}")
    return name


def parse_target(text: str, default_host: str = DEFAULT_HOST, default_port: int = DEFAULT_PORT) -> Target:
    """Read a target as typed (``[/W] [name][@host[:port]]...``, or a finger URL)."""
    if text[: len(URL_SCHEME)].lower() == URL_SCHEME:
        return parse_url(text, default_port)
    verbose, name, hosts = _split_request(text)
    if not hosts:
        return Target(name, (), default_host, default_port, verbose)
    host, port = split_host_port(hosts[-1], default_port)
    return Target(name, hosts[:-1], host, port, verbose)


def parse_url(text: str, default_port: int = DEFAULT_PORT) -> Target:
    """``finger://host[:port][/request]``; the request is percent-decoded.

    The request is what would be typed before the host's own ``@``: a name,
    ``/W name``, or ``name@host1`` to ask the host to forward.
    """
    rest = text[len(URL_SCHEME) :]
    authority, _, request = rest.partition("/")
    if not authority or any(mark in authority for mark in "@?#") or any(mark in request for mark in "?#"):
        raise ValueError(f"expected finger://host[:port]/name, got {text!r}")
    host, port = split_host_port(authority, default_port)
    try:
        request = unquote(request, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"the request in {text!r} is not UTF-8") from None
    verbose, name, via = _split_request(request)
    return Target(name, via, host, port, verbose)


def _split_request(text: str) -> tuple[bool, str, tuple[str, ...]]:
    """``[/W] name@host1@host2`` into the verbose flag, the name and the hosts, each checked."""
    text = text.strip(" \t")
    verbose = text[:2] in ("/W", "/w")
    if verbose:
        text = text[2:].lstrip(" \t")
    name, at, chain = text.partition("@")
    name = check_name(name.rstrip(" \t"))
    hosts = tuple(host.strip(" \t") for host in chain.split("@")) if at else ()
    for host in hosts:
        split_host_port(host)
    return verbose, name, hosts


# -- showing a reply (pure) --------------------------------------------


def reply_lines(data: bytes) -> list[bytes]:
    """The lines of a reply, without their CR LF or LF."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def show(data: bytes, escape: bool = False, ascii_only: bool = False) -> str:
    """The reply as text for a terminal, one ``\\n`` per line."""
    shown = []
    for line in reply_lines(data):
        text = visible_bytes(line) if escape else printable(line.decode("utf-8", "replace"))
        if ascii_only:
            text = "".join(char for char in text if char.isascii())
        shown.append(text + "\n")
    return "".join(shown)


# -- the network (thin) ------------------------------------------------


class FingerError(Exception):
    """The exchange failed; ``received`` is what arrived before it did."""

    exit_status = NETWORK_ERROR

    def __init__(self, message: str, received: bytes = b"") -> None:
        super().__init__(message)
        self.received = received


class Refused(FingerError):
    """Nothing listens there: its own exit status, since it usually means a wrong port or host."""

    exit_status = REFUSED


class TimedOut(FingerError):
    """The deadline passed while connecting or reading."""

    exit_status = TIMED_OUT


class UnknownHost(FingerError):
    """The name has no address."""

    exit_status = UNKNOWN_HOST


@dataclass(frozen=True)
class Reply:
    """What the server sent, and whether it was cut at the limit."""

    data: bytes
    truncated: bool = False


def resolve(host: str, port: int) -> list[Address]:
    """Every address of ``host``, once; UnknownHost when there is none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        reason = error.strerror if isinstance(error, socket.gaierror) else "not a valid name"
        raise UnknownHost(f"unknown host {host}: {reason}") from None
    addresses: list[Address] = []
    for family, _, _, _, sockaddr in infos:
        if (family, sockaddr) not in addresses:
            addresses.append((family, sockaddr))
    return addresses


def exchange(addresses: Sequence[Address], query: bytes, deadline: float, limit: int) -> Reply:
    """Connect to the first address that answers, send ``query``, read to EOF or ``limit`` bytes.

    Only the given addresses are used, so a caller that checked them knows
    where the connection goes.  Everything must be done by ``deadline``
    (a `time.monotonic` value), however slowly the server trickles.
    """
    with connect(addresses, deadline) as sock:
        return converse(sock, query, deadline, limit)


def converse(sock: socket.socket, query: bytes, deadline: float, limit: int) -> Reply:
    """Send ``query`` on a connected socket and read the reply to EOF or ``limit`` bytes, by ``deadline``."""
    received = bytearray()
    try:
        sock.settimeout(_remaining(deadline, received))
        sock.sendall(query)
        while len(received) <= limit:
            sock.settimeout(_remaining(deadline, received))
            chunk = sock.recv(min(65536, limit + 1 - len(received)))
            if not chunk:
                return Reply(bytes(received))
            received += chunk
    except TimeoutError:
        raise TimedOut("timed out waiting for the reply", bytes(received)) from None
    except OSError as error:
        raise FingerError(f"connection lost: {error.strerror or error}", bytes(received)) from None
    return Reply(bytes(received[:limit]), truncated=True)


def ask(target: Target, timeout: float = DEFAULT_TIMEOUT, limit: int = REPLY_LIMIT) -> Reply:
    """Resolve, connect, send the query and read the reply, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    return exchange(resolve(target.host, target.port), target.query(), deadline, limit)


def _remaining(deadline: float, received: bytes | bytearray = b"") -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimedOut("timed out", bytes(received))
    return left


def connect(
    addresses: Sequence[Address], deadline: float, opened: Callable[[socket.socket], None] | None = None
) -> socket.socket:
    """A socket connected to the first of ``addresses`` that answers by ``deadline``.

    ``opened`` is shown each socket before it connects, so that another
    thread can shut it down (a daemon that stops cuts its forwarding hops).
    """
    error: FingerError = UnknownHost("no address to connect to")
    for family, sockaddr in addresses:
        left = _remaining(deadline)
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as failure:
            raise FingerError(f"cannot open a socket: {failure.strerror or failure}") from None
        try:
            if opened is not None:
                opened(sock)
            sock.settimeout(left)
            sock.connect(sockaddr)
            return sock
        except ConnectionRefusedError:
            error = Refused("connection refused")
        except TimeoutError:
            error = TimedOut("timed out connecting")
        except OSError as failure:
            error = FingerError(f"cannot connect: {failure.strerror or failure}")
        sock.close()
    raise error


# -- the command -------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The options of ``fingerd query`` / ``python -m fingerd.client``."""
    parser = argparse.ArgumentParser(
        prog="fingerd query",
        usage=(
            "%(prog)s [-h] [-l] [--port N] [-c FILE] [--timeout SECONDS] [-e | --ascii]\n"
            "       [/W] [[name][@host[:port]] | finger://host[:port]/name]"
        ),
        description="Ask a finger server (RFC 1288) about a user, or for its user list.",
        epilog="Exit status: 0 done, 1 network error, 2 usage, 3 connection refused, 4 timed out, 5 unknown host.",
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("words", nargs="*", metavar="TARGET", help="[name][@host[:port]]... or finger://host[:port]/name")
    add("-l", "--long", action="store_true", help="the verbose form (sends /W, as does a /W before TARGET)")
    add(
        "--port", type=_port, metavar="N",
        help="port when TARGET names none (default 79; for the local daemon, its config's finger-port)",
    )
    add(
        "-c", "--config", metavar="FILE",
        help=f"the local daemon's config file, for its finger-port (default: {DEFAULT_CONFIG}, when readable)",
    )
    add("--timeout", type=_timeout, default=DEFAULT_TIMEOUT, metavar="SECONDS", help="whole exchange (default 10)")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("-e", "--escape", action="store_true", help="show control characters as ^X and \\xNN")
    shown.add_argument("--ascii", action="store_true", help="print printable 7-bit ASCII only")
    return parser


def _port(text: str) -> int:
    try:
        return parse_port(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number from 1 to 65535: {text!r}") from None


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"seconds, more than 0 and at most 3600: {text!r}")
    return value


def target_from_words(words: Sequence[str], long: bool, port: int) -> Target:
    """The target named on the command line: ``[/W] [TARGET]``."""
    words = list(words)
    verbose = long
    if words and words[0] in ("/W", "/w"):
        verbose = True
        words.pop(0)
    if len(words) > 1:
        raise ValueError("one target at a time: [/W] [name][@host[:port]]")
    target = parse_target(words[0] if words else "", DEFAULT_HOST, port)
    if verbose and not target.verbose:
        target = Target(target.name, target.via, target.host, target.port, True)
    return target


def default_port(options: argparse.Namespace) -> int:
    """The port for a target that names none: ``--port``, else the local daemon's, when no host is named."""
    if options.port is not None:
        return options.port
    if any("@" in word or word[: len(URL_SCHEME)].lower() == URL_SCHEME for word in options.words):
        return DEFAULT_PORT
    configured = read_setting("finger-port", options.config)
    if configured is None:
        return DEFAULT_PORT
    try:
        return parse_port(configured)
    except ValueError:
        raise ValueError(f"finger-port in {options.config or DEFAULT_CONFIG} is not a port: {configured!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_args(argv)
    try:
        target = target_from_words(options.words, options.long, default_port(options))
    except (ValueError, ConfigFileError) as error:
        parser.error(str(error))
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        reply = ask(target, options.timeout)
    except FingerError as error:
        sys.stdout.write(show(error.received, options.escape, options.ascii))
        sys.stdout.flush()
        print(f"fingerd query: {target.where()}: {error}", file=sys.stderr)
        return error.exit_status
    sys.stdout.write(show(reply.data, options.escape, options.ascii))
    if reply.truncated:
        print(f"fingerd query: {target.where()}: reply cut off after {REPLY_LIMIT} bytes", file=sys.stderr)
    return OK


if __name__ == "__main__":
    sys.exit(main())
