"""Configuration: one option list, three ways to set it (docs/install.md, "Options").

Every long option is also a config-file key (``finger-port = 79``) and an
environment variable (``FINGERD_FINGER_PORT``).  The command line beats the
environment, which beats the file, which beats the default;
`configargparse` does the merging.  ``--check-config`` prints the effective
values and where each came from.

Every value is checked here, before anything is bound, so a bad value is one
line on stderr naming the option and exit status 2, never a traceback from
deep inside a service.  Options whose service is not built yet are accepted
(so configuration files written for the full daemon load) and say so in
``--help``.
"""

from __future__ import annotations

import argparse
import difflib
import grp
import os
import pwd
import re
import shlex
import shutil
import ssl
from collections.abc import Callable, Sequence
from typing import NoReturn
from urllib.parse import urlsplit

import configargparse

from fingerd import __version__

from fingerd.client import parse_host
from fingerd.config_file import DEFAULT_CONFIG, config_value
from fingerd.irc_server import MISSING, irc_missing, parse_server
from fingerd.listen import resolve_listen_address
from fingerd.protocol import is_valid_name
from fingerd.proxy import TrustedProxies, network
from fingerd.sources.command import CommandSource
from fingerd.users.statusfile import DEFAULT_PATH
from fingerd.web.pages import Templates, TemplateError

ENV_PREFIX = "FINGERD_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SOURCES = ("file", "passwd", "command", "web")
SYSLOG_SOCKET = "/dev/log"
PLANNED = " (accepted, not implemented yet)"
COMMAND_LINE_ONLY = ("help", "version", "config", "check_config", "inetd")
EPILOG = (
    "Every long option is also a config-file key (finger-port = 79) and an environment "
    "variable (FINGERD_FINGER_PORT). Precedence: command line, environment, config file, default. "
    "Also: 'fingerd set [--for NAME] [--clear] [MESSAGE]' sets your status; "
    "'fingerd query [/W] [name][@host[:port]]' asks a finger server; "
    "'fingerd edit' edits the status file under the setters' lock, as vipw does."
)


class _HelpFormatter(argparse.HelpFormatter):
    """Shows a default only where there is one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, "", False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _where(path: str, key: str) -> str:
    """``path:line`` of the line that sets ``key`` (the last one: it wins), or just ``path``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().split("\n")
    except OSError:
        return path
    numbers = [number for number, line in enumerate(lines, start=1) if config_value(line, key) is not None]
    return f"{path}:{numbers[-1]}" if numbers else path


def names_config_file(argv: Sequence[str]) -> bool:
    """True when the command line names a config file (``-c FILE``, ``-cFILE``, ``--config[=]FILE``)."""
    return any(arg in ("-c", "--config") or arg.startswith("--config=") or arg[:2] == "-c" for arg in argv)


class Parser(configargparse.ArgumentParser):
    """The daemon's option parser, with value checks after parsing.

    ``default_config``: the config file read when the command line names
    none (`DEFAULT_CONFIG`, when it exists); pass None when it names one,
    so that ``-c`` replaces the default file rather than adds to it.
    """

    def __init__(self, default_config: str | None = None) -> None:
        super().__init__(
            default_config_files=[default_config] if default_config else [],
            prog="fingerd",
            description="A finger server (RFC 1288) built on threads.",
            epilog=EPILOG,
            auto_env_var_prefix=ENV_PREFIX,
            allow_abbrev=False,
            add_config_file_help=False,
            add_env_var_help=False,
            formatter_class=_HelpFormatter,
        )
        _add_options(self)

    def get_possible_config_keys(self, action: argparse.Action) -> list[str]:
        """Keep --check-config and -c on the command line only."""
        if action.dest in COMMAND_LINE_ONLY:
            return []
        return super().get_possible_config_keys(action)

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """Parse and check; exits with status 2 and a message on bad input."""
        options, unknown = self.parse_known_args(argv)
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        problem = self.unknown_environment() or resolve(options)
        if problem:
            self.error(problem)
        return options

    def error(self, message: str) -> NoReturn:
        """A mistake in a config file: one line naming the file, the line and the key, no usage; others as argparse."""
        located = self.config_file_problem(message)
        if located:
            self.exit(2, f"{self.prog}: {located}\n")
        super().error(message)

    def config_file_problem(self, message: str) -> str:
        """``message`` said as ``FILE:LINE: ...`` when a config file caused it (an unknown key, or its bad value); else ""."""
        option = re.match(r"argument (?:-\w/)?--([\w-]+): (.*)", message, re.DOTALL)
        for source, settings in getattr(self, "_source_to_settings", {}).items():
            kind, _, path = source.partition("|")
            if kind != "config_file":
                continue
            for key, (action, _) in settings.items():
                if action is None:
                    return f"{_where(path, key)}: unknown key {key!r}{self._suggestion(key)}"
            if option and option[1] in settings:
                return f"{_where(path, option[1])}: {option[1]}: {option[2]}"
        return ""

    def config_file_read(self, options: argparse.Namespace) -> str | None:
        """The config file these options were read from, if any."""
        if options.config:
            return options.config
        return next((path for path in self._default_config_files if os.path.isfile(path)), None)

    def _suggestion(self, key: str) -> str:
        keys = [name for action in self._actions for name in self.get_possible_config_keys(action)]
        close = difflib.get_close_matches(key, keys, n=1)
        return f" (did you mean {close[0]!r}?)" if close else " (keys are the long options without their dashes)"

    def unknown_environment(self) -> str:
        """A FINGERD_ variable that names no option is a typo worth stopping for."""
        known = {action.env_var for action in self._actions if getattr(action, "env_var", None)}
        unknown = sorted(name for name in os.environ if name.startswith(ENV_PREFIX) and name not in known)
        if unknown:
            return f"unknown environment variable {unknown[0]}: no such option"
        return ""

    def effective(self, options: argparse.Namespace) -> str:
        """The configuration in config-file syntax, then where each value came from."""
        lines = ["# effective configuration"]
        lines.extend(f"{key} = {value}" for key, value in self._effective_pairs(options))
        return "\n".join(lines) + "\n\n# where the values came from\n" + self.format_values()

    def effective_line(self, options: argparse.Namespace) -> str:
        """The effective configuration on one line, for the start-up log."""
        return " ".join(f"{key}={shlex.quote(value)}" for key, value in self._effective_pairs(options))

    def origins_line(self) -> str:
        """Where the values came from, on one line: what each source set; the rest are defaults."""
        parts = []
        for source, settings in self._source_to_settings.items():
            if source == "command_line":
                words = settings.get("", (None, []))[1]
                if words:
                    parts.append("command line: " + shlex.join(words))
            elif source == "environment_variables":
                parts.append("environment: " + ", ".join(settings))
            elif source.startswith("config_file|"):
                parts.append(f"config file {source.partition('|')[2]}: " + ", ".join(settings))
        return "; ".join([*parts, "defaults for the rest"])

    def _effective_pairs(self, options: argparse.Namespace) -> list[tuple[str, str]]:
        pairs = []
        for action in self._actions:
            keys = self.get_possible_config_keys(action)
            if keys:
                pairs.append((keys[0], _config_value(getattr(options, action.dest))))
        return pairs


def _config_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return "" if value is None else str(value)


def _checked(convert: Callable[[str], object], accept: Callable[[object], bool], rule: str):
    """An argparse type: convert, then check; the message says the rule."""

    def check(text: str) -> object:
        try:
            value = convert(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: {rule}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: {rule}")
        return value

    return check


_port = _checked(int, lambda value: 0 <= value <= 65535, "a port number from 0 to 65535")
_seconds = _checked(float, lambda value: 0 < value <= 86400, "seconds, more than 0 and at most 86400")
_ttl = _checked(float, lambda value: 0 <= value <= 86400, "seconds, from 0 to 86400")
_count = _checked(int, lambda value: value >= 1, "a whole number of at least 1")
_limit = _checked(int, lambda value: value >= 0, "a whole number, 0 for no limit")
_uid = _checked(int, lambda value: value >= 0, "a uid, 0 or more")
_network = _checked(network, lambda value: True, "an address or a network, such as 192.0.2.10 or 10.0.0.0/8")
_level = _checked(str.lower, lambda value: value in LOG_LEVELS, "one of " + ", ".join(LOG_LEVELS))


def _add_options(parser: configargparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "-c", "--config", is_config_file=True, metavar="FILE",
        help=f"config file (key = value lines); without -c, {DEFAULT_CONFIG} when it exists",
    )
    add("--check-config", action="store_true", help="validate, print the effective configuration, exit")
    add("--version", action="version", version=f"%(prog)s {__version__}", help="print the version, exit")
    add(
        "--inetd", action="store_true",
        help="answer the one connection on standard input (from inetd or xinetd, nowait), then exit; logs to syslog",
    )

    finger = parser.add_argument_group("finger service")
    finger.add_argument("--status-file", default=DEFAULT_PATH, metavar="PATH", help="the status file")
    finger.add_argument("--bind", default="", metavar="ADDR", help="listen address; empty: all, IPv4 and IPv6")
    finger.add_argument("--finger-port", type=_port, default=79, metavar="N", help="finger port")
    finger.add_argument("--timeout", type=_seconds, default=10.0, metavar="SECONDS", help="per-connection timeout")
    finger.add_argument("--max-connections", type=_count, default=512, metavar="N", help="concurrent connections")
    finger.add_argument(
        "--max-per-address",
        type=_limit,
        default=32,
        metavar="N",
        help="concurrent connections from one client address (IPv6: one /64), per service; 0: no limit",
    )
    finger.add_argument(
        "--proxy-from",
        action="append",
        type=_network,
        metavar="CIDR",
        help="peers trusted to name the client with a PROXY header (v1 or v2; on the finger port they must send one) "
        "or X-Forwarded-For; repeatable; default: none",
    )
    finger.add_argument(
        "--list-users", action=argparse.BooleanOptionalAction, default=True, help="answer the empty query with a list"
    )
    finger.add_argument(
        "--forwarding", action=argparse.BooleanOptionalAction, default=False, help="answer user@host by asking host"
    )
    finger.add_argument("--forward-max-hops", type=_count, default=1, metavar="N", help="longest @host chain forwarded")
    finger.add_argument(
        "--forward-allow",
        action="append",
        metavar="HOST",
        help="host forwarding may reach, repeatable; when given, no other host (default: public addresses, port 79)",
    )

    sources = parser.add_argument_group("sources")
    sources.add_argument(
        "--source", action="append", choices=SOURCES, metavar="NAME", help="lookup order, repeatable; default: file"
    )
    sources.add_argument("--passwd-min-uid", type=_uid, default=1000, metavar="N", help="passwd: lowest uid shown")
    sources.add_argument("--passwd-deny", action="append", metavar="NAME", help="passwd: an account never shown, repeatable")
    sources.add_argument(
        "--utmp-file", default="/var/run/utmp", metavar="PATH", help="passwd: login sessions (read only)"
    )
    sources.add_argument(
        "--show-hosts",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="passwd: show where a session comes from (off: where users log in from is theirs)",
    )
    sources.add_argument("--mail-dir", default="/var/mail", metavar="PATH", help="passwd: mail spool, stat'ed, never read")
    sources.add_argument(
        "--show-mail", action=argparse.BooleanOptionalAction, default=True, help="passwd: mail lines (No mail., ...)"
    )
    sources.add_argument(
        "--list-all-accounts",
        action="store_true",
        help="passwd: the user list shows every account, not only those logged in",
    )
    sources.add_argument(
        "--command", metavar="CMDLINE", help="command: program and fixed arguments, never run by a shell; the name is appended"
    )
    sources.add_argument("--command-timeout", type=_seconds, default=5.0, metavar="SECONDS", help="command: time limit")
    sources.add_argument("--web-url", metavar="TEMPLATE", help="web: http(s) URL with {name}")
    sources.add_argument("--web-timeout", type=_seconds, default=5.0, metavar="SECONDS", help="web: time limit per fetch")
    sources.add_argument(
        "--web-cache-ttl", type=_ttl, default=30.0, metavar="SECONDS", help="web: how long answers are kept; 0: not kept"
    )

    web = parser.add_argument_group("web, setter and IRC")
    web.add_argument("--web-port", type=_port, default=8000, metavar="N", help="web view (HTML, JSON, XML-RPC); 0: off")
    web.add_argument("--https-port", type=_port, default=0, metavar="N", help="the web view over TLS; 0: off")
    web.add_argument("--tls-cert", metavar="FILE", help="certificate chain (PEM) for --https-port")
    web.add_argument("--tls-key", metavar="FILE", help="private key (PEM) for --https-port")
    web.add_argument("--templates", metavar="DIR", help="directory whose files override the page templates")
    web.add_argument(
        "--setter-port", type=_port, default=0, metavar="N", help="tutorial TCP setter on 127.0.0.1, trusts every local user; 0: off"
    )
    web.add_argument(
        "--setter-socket", default="/run/fingerd/setter.sock", metavar="PATH", help="Unix socket for 'fingerd set'; empty: off"
    )
    web.add_argument("--irc-server", default="", metavar="HOST[:PORT]", help="IRC bot's server (port 6667); empty: off")
    web.add_argument("--irc-nick", default="fingerbot", metavar="NAME", help="the bot's nick")
    web.add_argument("--irc-channel", action="append", metavar="NAME", help="channel to join, repeatable")
    web.add_argument("--irc-tls", action="store_true", help="connect to the IRC server with TLS")

    daemon = parser.add_argument_group("daemon")
    daemon.add_argument("--user", default="nobody", metavar="NAME", help="run as this user when started as root")
    daemon.add_argument("--group", default="nogroup", metavar="NAME", help="run as this group when started as root")
    daemon.add_argument("--pidfile", default="", metavar="PATH", help="write the process id here")
    daemon.add_argument("--log-file", default="", metavar="PATH", help="log here instead of stderr")
    daemon.add_argument("--log-level", type=_level, default="info", metavar="LEVEL", help="least severe level logged")
    daemon.add_argument("--syslog", action="store_true", help="log to syslog")
    daemon.add_argument(
        "--log-peers", action=argparse.BooleanOptionalAction, default=True, help="write client addresses in the logs"
    )


def resolve(options: argparse.Namespace) -> str:
    """Check what needs more than one value's text, and fill in derived values.

    Returns the first problem as an argparse-style message, or ''.  Adds to
    ``options``: the default ``source`` list, the resolved ``*_address``
    values, ``tls_context`` and ``page_templates``.
    """
    if options.source is None:
        options.source = ["file"]
    options.proxies = TrustedProxies(options.proxy_from or [])
    if len(set(options.source)) != len(options.source):
        return f"argument --source: a source is listed twice: {', '.join(options.source)}"
    if options.finger_port == 0:
        return "argument --finger-port: invalid value '0': a port number from 1 to 65535"
    if not options.status_file.strip():
        return "argument --status-file: must not be empty"
    try:
        options.finger_address = resolve_listen_address(options.bind, options.finger_port)
        options.web_address = resolve_listen_address(options.bind, options.web_port) if options.web_port else None
        options.https_address = resolve_listen_address(options.bind, options.https_port) if options.https_port else None
    except ValueError as error:
        return f"argument --bind: {error}"
    return (
        _check_sources(options)
        or _check_forwarding(options)
        or _check_irc(options)
        or _load_tls(options)
        or _load_templates(options)
        or _check_logging(options)
        or _check_identity(options)
    )


def _check_sources(options: argparse.Namespace) -> str:
    """Each source's options: present when the source is used, and only then."""
    options.passwd_deny = options.passwd_deny or []
    if options.passwd_deny and "passwd" not in options.source:
        return "argument --passwd-deny: set, but --source does not list passwd"
    for name in options.passwd_deny:
        if not is_valid_name(name):
            return f"argument --passwd-deny: not a user name: {name!r}"
    for option, value in (("--show-hosts", options.show_hosts), ("--list-all-accounts", options.list_all_accounts)):
        if value and "passwd" not in options.source:
            return f"argument {option}: set, but --source does not list passwd"
    for option, path in (("--utmp-file", options.utmp_file), ("--mail-dir", options.mail_dir)):
        if not path.strip():
            return f"argument {option}: must not be empty"
    for source, option, value in (("command", "--command", options.command), ("web", "--web-url", options.web_url)):
        if source in options.source and not value:
            return f"argument --source: {source} needs {option}"
        if value and source not in options.source:
            return f"argument {option}: set, but --source does not list {source}"
    options.command_timeout = min(options.command_timeout, options.timeout)
    options.web_timeout = min(options.web_timeout, options.timeout)
    return _check_command(options) or _check_web_url(options)


def _check_command(options: argparse.Namespace) -> str:
    """Split the command line now and find the program, so a typo stops start-up."""
    options.command_argv = []
    if not options.command:
        return ""
    try:
        argv = shlex.split(options.command)
    except ValueError as error:
        return f"argument --command: cannot split {options.command!r}: {error}"
    if not argv:
        return "argument --command: empty command line"
    program = shutil.which(argv[0], path=CommandSource.environment["PATH"])
    if program is None:
        return f"argument --command: no executable {argv[0]!r} (searched {CommandSource.environment['PATH']})"
    options.command_argv = [os.path.abspath(program), *argv[1:]]
    return ""


def _check_web_url(options: argparse.Namespace) -> str:
    """An http(s) URL whose host is fixed: ``{name}`` may only be in the path or the query."""
    url = options.web_url
    if not url:
        return ""
    if "{name}" not in url:
        return f"argument --web-url: {url!r} has no {{name}}"
    parts = urlsplit(url)
    try:
        parts.port
    except ValueError:
        return f"argument --web-url: {url!r} has an invalid port"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"argument --web-url: {url!r} is not an http or https URL"
    if "{name}" not in parts.path + parts.query:
        return f"argument --web-url: {url!r}: {{name}} must be in the path or the query"
    if parts.username is not None or parts.password is not None:
        return "argument --web-url: credentials in the URL are refused (the configuration is logged at start)"
    return ""


def _check_forwarding(options: argparse.Namespace) -> str:
    """Allow-list entries are hosts without a port, kept in the form queries are compared in."""
    allowed = []
    for host in options.forward_allow or []:
        try:
            allowed.append(parse_host(host.strip()))
        except ValueError as error:
            return f"argument --forward-allow: {error} (a host name or address, without a port)"
    if allowed and not options.forwarding:
        return "argument --forward-allow: set, but --forwarding is off"
    options.forward_allow = allowed
    return ""


IRC_NICK = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]{0,29}")
IRC_CHANNEL = re.compile(r"[#&][^\x00-\x20,:\x7f]{1,49}")


def _check_irc(options: argparse.Namespace) -> str:
    options.irc_channel = options.irc_channel or []
    options.irc_address = None
    if not options.irc_server:
        return ""
    try:
        options.irc_address = parse_server(options.irc_server)
    except ValueError as error:
        return f"argument --irc-server: {error}"
    if irc_missing():
        return f"argument --irc-server: {MISSING}"
    if not IRC_NICK.fullmatch(options.irc_nick):
        return f"argument --irc-nick: not a valid IRC nick: {options.irc_nick!r}"
    for channel in options.irc_channel:
        if not IRC_CHANNEL.fullmatch(channel):
            return f"argument --irc-channel: not a valid channel name: {channel!r} (it starts with # or &)"
    return ""


def _load_tls(options: argparse.Namespace) -> str:
    """Build the TLS context now, while the key is still readable (before the drop)."""
    options.tls_context = None
    if not options.https_port:
        return ""
    for option, path in (("--tls-cert", options.tls_cert), ("--tls-key", options.tls_key)):
        if not path:
            return f"argument --https-port: needs {option}"
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            return f"argument {option}: cannot read {path!r}: {error.strerror}"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(options.tls_cert, options.tls_key)
    except ssl.SSLError as error:
        return f"argument --tls-key: {options.tls_key!r} and --tls-cert {options.tls_cert!r} do not load: {error.reason}"
    options.tls_context = context
    return ""


def _load_templates(options: argparse.Namespace) -> str:
    if options.templates and not os.path.isdir(options.templates):
        return f"argument --templates: not a directory: {options.templates!r}"
    try:
        options.page_templates = Templates.load(options.templates)
    except TemplateError as error:
        return f"argument --templates: {error}"
    return ""


def _check_logging(options: argparse.Namespace) -> str:
    if options.log_file:
        path = os.path.abspath(options.log_file)
        target = path if os.path.exists(path) else os.path.dirname(path)
        if not os.access(target, os.W_OK):
            return f"argument --log-file: cannot write {options.log_file!r}"
    if options.syslog and not os.path.exists(SYSLOG_SOCKET):
        return f"argument --syslog: {SYSLOG_SOCKET} does not exist (is a syslog daemon running?)"
    return ""


def _check_identity(options: argparse.Namespace) -> str:
    if os.geteuid() != 0:
        return ""
    try:
        pwd.getpwnam(options.user)
    except KeyError:
        return f"argument --user: no such user: {options.user!r}"
    try:
        grp.getgrnam(options.group)
    except KeyError:
        return f"argument --group: no such group: {options.group!r}"
    return ""
