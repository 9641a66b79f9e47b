"""Configuration: one option list, three ways to set it (SPEC 3).

Every long option is also a config-file key (``finger-port = 79``) and an
environment variable (``FINGERD_FINGER_PORT``).  The command line beats the
environment, which beats the file, which beats the default;
`configargparse` does the merging and `--check-config` shows where each
value came from.

Every value is checked here, before anything is bound, so a bad value is one
line on stderr naming the option and exit status 2, never a traceback from
deep inside a service.  Options whose service is not built yet are accepted
(so configuration files written for the full daemon load) and say so in
``--help``.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
from collections.abc import Sequence

import configargparse

from fingerd.listen import resolve_listen_address

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SOURCES = ("file", "passwd", "command", "web")
PLANNED = " (accepted, not implemented yet)"


class Parser(configargparse.ArgumentParser):
    """The daemon's option parser, with value checks after parsing."""

    def __init__(self) -> None:
        super().__init__(
            prog="fingerd",
            description="A finger server (RFC 1288) built on threads.",
            auto_env_var_prefix="FINGERD_",
            allow_abbrev=False,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        _add_options(self)

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """Parse and validate; exits with status 2 and a message on bad input."""
        options = self.parse_args(argv)
        problem = validate(options)
        if problem:
            self.error(problem)
        return options


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r} (0-65535)")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 86400: {text!r}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _uid(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _level(text: str) -> str:
    value = text.strip().lower()
    if value not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"invalid level {text!r} (choose from {', '.join(LOG_LEVELS)})")
    return value


_port.__name__ = "port"
_positive.__name__ = "number of seconds"
_count.__name__ = "count"
_uid.__name__ = "uid"
_level.__name__ = "log level"


def _add_options(parser: configargparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("-c", "--config", is_config_file=True, metavar="FILE", help="config file (key = value lines)")
    add("--check-config", action="store_true", help="validate, print the effective configuration, exit")

    finger = parser.add_argument_group("finger service")
    finger.add_argument("--status-file", default="/var/lib/fingerd/status", metavar="PATH", help="the status file")
    finger.add_argument("--bind", default="", metavar="ADDR", help="listen address (default: all, IPv4 and IPv6)")
    finger.add_argument("--finger-port", type=_port, default=79, metavar="N", help="finger port")
    finger.add_argument("--timeout", type=_positive, default=10.0, metavar="SECONDS", help="per-connection timeout")
    finger.add_argument("--max-connections", type=_count, default=512, metavar="N", help="concurrent connections")
    finger.add_argument(
        "--list-users", action=argparse.BooleanOptionalAction, default=True, help="answer the empty query with a list"
    )
    finger.add_argument(
        "--forwarding", action=argparse.BooleanOptionalAction, default=False, help="user@host forwarding" + PLANNED
    )
    finger.add_argument("--forward-max-hops", type=_count, default=1, metavar="N", help="longest chain" + PLANNED)
    finger.add_argument("--forward-allow", action="append", metavar="HOST", help="forwarding target" + PLANNED)

    sources = parser.add_argument_group("sources")
    sources.add_argument(
        "--source", action="append", choices=SOURCES, metavar="NAME", help="lookup order (default: file)"
    )
    sources.add_argument("--passwd-min-uid", type=_uid, default=1000, metavar="N", help="passwd source" + PLANNED)
    sources.add_argument("--command", metavar="CMDLINE", help="command source" + PLANNED)
    sources.add_argument("--web-url", metavar="TEMPLATE", help="web source URL with {name}" + PLANNED)

    web = parser.add_argument_group("web, setter and IRC")
    web.add_argument("--web-port", type=_port, default=8000, metavar="N", help="web view, 0 disables" + PLANNED)
    web.add_argument("--https-port", type=_port, default=0, metavar="N", help="web view over TLS" + PLANNED)
    web.add_argument("--tls-cert", metavar="FILE", help="certificate for --https-port" + PLANNED)
    web.add_argument("--tls-key", metavar="FILE", help="private key for --https-port" + PLANNED)
    web.add_argument("--setter-port", type=_port, default=0, metavar="N", help="TCP setter on 127.0.0.1" + PLANNED)
    web.add_argument(
        "--setter-socket", default="/run/fingerd/setter.sock", metavar="PATH", help="setter socket" + PLANNED
    )
    web.add_argument("--irc-server", default="", metavar="HOST[:PORT]", help="IRC bot" + PLANNED)
    web.add_argument("--irc-nick", default="fingerbot", metavar="NAME", help="IRC nick" + PLANNED)
    web.add_argument("--irc-channel", action="append", metavar="NAME", help="channel to join" + PLANNED)

    daemon = parser.add_argument_group("daemon")
    daemon.add_argument("--user", default="nobody", metavar="NAME", help="run as this user when started as root")
    daemon.add_argument("--group", default="nogroup", metavar="NAME", help="run as this group when started as root")
    daemon.add_argument("--pidfile", default="", metavar="PATH", help="write the process id here")
    daemon.add_argument("--log-file", default="", metavar="PATH", help="log here instead of stderr")
    daemon.add_argument("--log-level", type=_level, default="info", metavar="LEVEL", help="least severe level logged")
    daemon.add_argument("--syslog", action="store_true", help="log to syslog")


def validate(options: argparse.Namespace) -> str:
    """Check values that need more than their own text; '' when all is well."""
    if options.source is None:
        options.source = ["file"]
    if len(set(options.source)) != len(options.source):
        return f"argument --source: a source is listed twice: {', '.join(options.source)}"
    if options.finger_port == 0:
        return "argument --finger-port: must be 1-65535"
    if not options.status_file.strip():
        return "argument --status-file: must not be empty"
    try:
        options.finger_address = resolve_listen_address(options.bind, options.finger_port)
    except ValueError as error:
        return f"argument --bind: {error}"
    if os.geteuid() == 0:
        return _check_identity(options)
    return ""


def _check_identity(options: argparse.Namespace) -> str:
    try:
        pwd.getpwnam(options.user)
    except KeyError:
        return f"argument --user: no such user: {options.user!r}"
    try:
        grp.getgrnam(options.group)
    except KeyError:
        return f"argument --group: no such group: {options.group!r}"
    return ""


def parse_config(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line, environment and config file into options."""
    return Parser().parse(argv)
