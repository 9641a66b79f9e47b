"""The application: owns every service, starts them in order, stops them in reverse.

Start-up follows one rule: *accept nothing until everything is ready*::

    parse options ──> open logs ──> bind ports (as root) ──> drop privileges
        ──> load and watch the status file ──> sources ──> signal handlers ──> pidfile
        ──> listen and serve ──> READY=1 ──> main loop

Ports are bound before the drop because only root may bind port 79; they
listen only at the end, so a client never meets a daemon that has not yet
loaded its table, and a SIGTERM during start-up is never lost.

The main thread does no network work.  It waits on a socket that the
interpreter writes to when a signal arrives (`signal.set_wakeup_fd`), so
it wakes at once for a signal and at least every `tick` seconds otherwise;
the signal handlers only set flags (one that took a lock could deadlock
against the main thread interrupted while holding it).  It runs the
watcher's health check, and on SIGTERM or SIGINT stops everything by one deadline,
`stop_budget` seconds away::

    every listener stops accepting ──> connections in progress go on until the cut-off
        (`REPLY_RESERVE` before the deadline) ──> the sources fail what still waits
        on them, and every listener wakes the clients still silent ──> every service
        stops in reverse order of starting, joining its threads

so a query in flight is answered (at worst "Lookup failed, try again later")
and logged before the process exits.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import resource
import select
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from fingerd.config import Parser, names_config_file
from fingerd.config_file import DEFAULT_CONFIG
from fingerd.daemon.access import AccessError, check_log_file, check_pidfile, check_status_file, setter_warnings
from fingerd.daemon.access_log import AccessLog
from fingerd.daemon.activation import ActivationError, take_passed_sockets
from fingerd.daemon.identity import IdentityError, drop_privileges, target_ids
from fingerd.daemon.logs import Logs
from fingerd.daemon.notify import Notifier
from fingerd.daemon.pidfile import PidFile, PidFileError
from fingerd.finger.answer import Policy
from fingerd.finger.server import FingerServer, FingerSettings
from fingerd.setter.tcp import TcpSetterServer
from fingerd.setter.unix import UnixSetterServer
from fingerd.sources.base import Source
from fingerd.sources.command import CommandSource
from fingerd.sources.directory import Directory
from fingerd.sources.file import FileSource
from fingerd.sources.passwd import PasswdSettings, PasswdSource
from fingerd.threads import REPLY_RESERVE, DescriptorReserve, join_all
from fingerd.users.table import UserTable
from fingerd.users.watcher import StatusFileWatcher
from fingerd.users.writer import StatusFileWriter
from fingerd.web.server import WebServer, WebSettings

if TYPE_CHECKING:
    from fingerd.irc_bot import IRCBot

log = logging.getLogger("fingerd")


class Service(Protocol):
    """What the application needs of a service: start, stop, and a health check."""

    def start(self) -> None: ...

    def stop(self, deadline: float) -> None: ...

    def alive(self) -> bool: ...


Listener = FingerServer | WebServer | TcpSetterServer | UnixSetterServer


class StartupError(Exception):
    """Start-up failed in a way the operator must fix; carries the exit status.

    ``errno`` is what the service manager is told (``ERRNO=``), so that
    ``start-stop-daemon`` can say why in its own words too.
    """

    def __init__(self, message: str, status: int = 1, error_number: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errno = error_number or (errno.EINVAL if status == 2 else errno.EIO)


def configured_source(name: str, options: argparse.Namespace, table: UserTable) -> Source:
    """One configured source; the option values were checked (and timeouts cut to --timeout) by `fingerd.config`."""
    if name == "passwd":
        settings = PasswdSettings(
            min_uid=options.passwd_min_uid,
            deny=frozenset(options.passwd_deny),
            utmp_file=options.utmp_file,
            show_hosts=options.show_hosts,
            mail_dir=options.mail_dir,
            show_mail=options.show_mail,
            list_all_accounts=options.list_all_accounts,
        )
        return PasswdSource(settings=settings)
    if name == "command":
        return CommandSource(options.command_argv, options.command_timeout)
    if name == "web":
        # Imported only when configured (still before the privilege drop):
        # requests and urllib3 cost every other daemon 6 MiB and start-up time.
        from fingerd.sources.web import WebSource

        return WebSource(options.web_url, options.web_timeout, options.web_cache_ttl)
    return FileSource(table)


def configured_directory(options: argparse.Namespace, table: UserTable) -> Directory:
    """The sources of ``--source``, asked in that order."""
    sources = [configured_source(name, options, table) for name in options.source]
    return Directory(sources, table, lists=options.list_users)


def finger_settings(options: argparse.Namespace) -> FingerSettings:
    return FingerSettings(
        timeout=options.timeout,
        max_connections=options.max_connections,
        max_per_address=options.max_per_address,
        proxies=options.proxies,
        policy=Policy(
            list_users=options.list_users,
            forwarding=options.forwarding,
            forward_max_hops=options.forward_max_hops,
            forward_allow=frozenset(options.forward_allow),
        ),
    )


class Application:
    """The running daemon."""

    tick = 0.5
    spare_descriptors = 64
    stop_budget = 2.5

    def __init__(self, options: argparse.Namespace, logs: Logs) -> None:
        self.options = options
        self.logs = logs
        self.table = UserTable()
        self.watcher = StatusFileWatcher(options.status_file, self.table)
        self.directory = configured_directory(options, self.table)
        self.access = AccessLog(logs)
        self.finger = FingerServer(options.finger_address, self.directory, finger_settings(options), self.access)
        self.writer = StatusFileWriter(options.status_file)
        self.listeners: list[Listener] = [self.finger, *self._web_servers(), *self._tcp_setter()]
        self.socket_setter = self._socket_setter()
        self.irc_bot = self._irc_bot()
        self.pidfile = PidFile(options.pidfile) if options.pidfile else None
        self.notifier = Notifier()
        self._running: list[Service] = []
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._stop_requested = False
        self._reload_requested = False

    def _web_servers(self) -> list[WebServer]:
        options = self.options
        settings = WebSettings(
            host=socket.gethostname(),
            timeout=options.timeout,
            max_per_address=options.max_per_address,
            proxies=options.proxies,
            healthy=self.healthy,
        )
        servers = []
        if options.web_address is not None:
            servers.append(WebServer(options.web_address, self.directory, options.page_templates, settings))
        if options.https_address is not None:
            servers.append(
                WebServer(options.https_address, self.directory, options.page_templates, settings, options.tls_context)
            )
        return servers

    def _irc_bot(self) -> IRCBot | None:
        """The bot, when configured; its module is imported only then, as `irc` is an optional extra."""
        options = self.options
        if options.irc_address is None:
            return None
        from fingerd.irc_bot import IRCBot

        tls = ssl.create_default_context() if options.irc_tls else None
        return IRCBot(options.irc_address, options.irc_nick, options.irc_channel, self.directory, tls)

    def _tcp_setter(self) -> list[TcpSetterServer]:
        if not self.options.setter_port:
            return []
        options = self.options
        return [TcpSetterServer(options.setter_port, self.writer, options.timeout, options.max_per_address)]

    def _socket_setter(self) -> UnixSetterServer | None:
        if not self.options.setter_socket:
            return None
        return UnixSetterServer(self.options.setter_socket, self.writer, self.options.timeout, target_ids(self.options))

    def _bind_socket_setter(self) -> None:
        """The setter socket is optional: without it the daemon still serves."""
        setter = self.socket_setter
        if setter is None:
            return
        try:
            setter.bind()
        except OSError as error:
            log.warning("setter socket %s not available (%s); 'fingerd set' will not work", setter.path, error.strerror or error)
            self.socket_setter = None
            return
        self.listeners.append(setter)

    def run(self) -> int:
        """Start, serve until told to stop, stop; return the exit status."""
        try:
            self._start()
        except BaseException:
            self._stop_services()
            self._close_unstarted()
            raise
        where = ", ".join(f"{listener.name} on {listener.listen_address}" for listener in self.listeners)
        self.notifier.send("READY=1", f"STATUS=serving {where}")
        log.info("ready: %s; status file %s", where, self.watcher.path)
        try:
            status = self._main_loop()
        except Exception:
            log.exception("unexpected error in the main loop")
            status = 1
        self.notifier.send("STOPPING=1")
        log.info("stopping")
        self._stop_services()
        log.info("stopped")
        return status

    def healthy(self) -> bool:
        """``GET /healthz``: True while the daemon runs and every service it started is alive.

        Called from web threads: the list of services is copied first (the
        main thread appends to it while starting and empties it while
        stopping), and each ``alive`` only reads a thread's state.
        """
        running = list(self._running)
        return bool(running) and not self._stop_requested and all(service.alive() for service in running)

    def _start(self) -> None:
        self.notifier.connect()
        self._raise_descriptor_limit()
        self._adopt_or_bind()
        self._bind_socket_setter()
        reserve = DescriptorReserve()
        for listener in self.listeners:
            listener.use_reserve(reserve)
        try:
            log.info("%s", drop_privileges(self.options.user, self.options.group))
        except IdentityError as error:
            raise StartupError(str(error), 2) from None
        self._check_access()
        self._open_log_file()
        self._start_service(self.watcher)
        self._start_service(self.directory)
        self._start_service(self.access)
        self._install_signal_handlers()
        if self.pidfile is not None:
            try:
                self.pidfile.write()
            except PidFileError as error:
                raise StartupError(str(error), 1, error.errno) from None
        for listener in self.listeners:
            try:
                self._start_service(listener)
            except OSError as error:
                message = f"cannot listen on {listener.listen_address}: {error.strerror or error}"
                raise StartupError(message, 1, error.errno) from None
        if self.irc_bot is not None:
            self._start_service(self.irc_bot)

    def _check_access(self) -> None:
        """As the daemon's own user: can it read the status file, and can the setters write?"""
        try:
            check_status_file(self.options.status_file)
        except AccessError as error:
            raise StartupError(str(error), 2, error.errno) from None
        if self.socket_setter is None and not self.options.setter_port:
            return
        socket_path = self.socket_setter.path if self.socket_setter is not None else None
        for problem in setter_warnings(self.options.status_file, socket_path):
            log.warning("%s", problem)

    def _open_log_file(self) -> None:
        path = self.options.log_file
        if not path:
            return
        try:
            self.logs.use_file(path)
        except OSError as error:
            raise StartupError(f"argument --log-file: cannot open {path!r}: {error.strerror}", 2, error.errno) from None

    def _adopt_or_bind(self) -> None:
        """Each listener serves on the socket systemd passed for it, if any, else binds its own."""
        try:
            passed = take_passed_sockets(os.environ)
        except ActivationError as error:
            raise StartupError(f"socket activation: {error}", 2) from None
        for listener in list(self.listeners):
            sock = passed.pop(listener.name, None)
            if sock is None:
                self._bind(listener)
                continue
            listener.adopt(sock)
            log.info("%s: serving on %s, passed by the service manager", listener.name, listener.listen_address)
        if passed:
            for sock in passed.values():
                sock.close()
            unused = ", ".join(sorted(passed))
            raise StartupError(f"socket activation: {unused} passed, but that service is off in the configuration", 2)

    def _bind(self, server: Listener) -> None:
        try:
            server.bind()
        except OSError as error:
            for listener in self.listeners:
                listener.server_close()
            reason = error.strerror or str(error)
            raise StartupError(f"cannot listen on {server.listen_address}: {reason}", 1, error.errno) from None

    def _start_service(self, service: Service) -> None:
        service.start()
        self._running.append(service)

    def _stop_services(self) -> None:
        """Stop accepting everywhere; at the cut-off, end what still waits; stop all in reverse order by one deadline.

        The deadline keeps the exit within the 5 s a service manager is
        promised (docs/install.md, "Signals").  Every listener is
        given the same grace at once, so that no service's slow client
        uses up another's.
        """
        deadline = time.monotonic() + self.stop_budget
        cutoff = deadline - REPLY_RESERVE
        listeners = [listener for listener in reversed(self.listeners) if listener in self._running]
        self._each(listeners, lambda listener: listener.stop_accepting())
        for listener in listeners:
            join_all(listener.threads(), cutoff)
        if self.directory in self._running:
            self._each([self.directory], lambda directory: directory.cancel())
        self._each(listeners, lambda listener: listener.cut())
        while self._running:
            service = self._running.pop()
            self._each([service], lambda service: service.stop(deadline))
        if self.pidfile is not None:
            self.pidfile.remove()

    @staticmethod
    def _each(services: Sequence[object], step: Callable[[Any], None]) -> None:
        """Take one stop step for each service; a failure is logged and the others still stop."""
        for service in services:
            try:
                step(service)
            except Exception:
                log.exception("error stopping %s", type(service).__name__)

    def _close_unstarted(self) -> None:
        """After a failed start: close what was bound but never served, so no socket file is left behind."""
        for listener in self.listeners:
            if listener not in self._running:
                listener.server_close()

    def _install_signal_handlers(self) -> None:
        signal.set_wakeup_fd(self._wake_writer.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, number: int, frame: object) -> None:
        self._stop_requested = True

    def _on_reload_signal(self, number: int, frame: object) -> None:
        self._reload_requested = True

    def _main_loop(self) -> int:
        """Run until a stop signal (exit status 0) or a dead service (1)."""
        while True:
            self._wait_for_a_signal()
            if self._stop_requested:
                return 0
            if self._reload_requested:
                self._reload_requested = False
                self._reload()
            self.watcher.check()
            dead = [type(service).__name__ for service in self._running if not service.alive()]
            if dead:
                log.critical("%s stopped unexpectedly; shutting down", ", ".join(dead))
                return 1

    def _wait_for_a_signal(self) -> None:
        """Sleep until a signal arrives (its number written to the wakeup socket) or `tick` passes."""
        select.select([self._wake_reader], [], [], self.tick)
        try:
            while self._wake_reader.recv(64):
                pass
        except BlockingIOError:
            pass

    def _reload(self) -> None:
        self.notifier.send("RELOADING=1")
        log.info("SIGHUP: reopening the log and reloading %s", self.watcher.path)
        self.logs.reopen()
        self.watcher.reload()
        self.notifier.send("READY=1")

    def _raise_descriptor_limit(self) -> None:
        """Make room for every connection the caps allow, or refuse to start.

        Each connection is a descriptor, so the soft limit is raised to the
        caps added up (`descriptors_wanted`); a hard limit below that would
        let the daemon run out of descriptors under load, where it could
        only answer "busy", so it is an error of the configuration.
        """
        wanted, parts = self.descriptors_wanted()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft >= wanted:
            return
        if hard != resource.RLIM_INFINITY and hard < wanted:
            raise StartupError(
                f"argument --max-connections: the open file limit ({hard}) cannot hold the connection caps "
                f"({parts} = {wanted}); lower --max-connections or raise the limit (ulimit -n, LimitNOFILE=)",
                2,
                errno.EMFILE,
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    def descriptors_wanted(self) -> tuple[int, str]:
        """Descriptors for every capped connection at once, plus `spare_descriptors`; and how that adds up."""
        parts = [(listener.name, listener.descriptors_needed()) for listener in self.listeners]
        if self.socket_setter is not None and self.socket_setter not in self.listeners:
            parts.append((self.socket_setter.name, self.socket_setter.descriptors_needed()))
        parts.append(("spare", self.spare_descriptors))
        return sum(count for _, count in parts), " + ".join(f"{count} {name}" for name, count in parts)

def check_as_the_daemon_user(options: argparse.Namespace) -> int:
    """``--check-config``: the start-up's access checks, as the user the daemon would become; 0 or 2.

    A child process drops privileges and checks, so this process keeps
    its own identity and nothing is bound or written.  Errors print as
    the start-up prints them; warnings too, as warnings.
    """
    pid = os.fork()
    if pid:
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        return status if status >= 0 else 2
    status = 2
    try:
        drop_privileges(options.user, options.group)
        for problem in access_problems(options):
            print(f"fingerd: {problem}", file=sys.stderr)
        status = 0
    except (IdentityError, AccessError) as error:
        print(f"fingerd: {error}", file=sys.stderr)
    except Exception as error:  # the checks met something unforeseen: say what, as the start-up would
        print(f"fingerd: cannot check the configuration as {options.user}: {error}", file=sys.stderr)
    finally:
        sys.stderr.flush()
        os._exit(status)


def access_problems(options: argparse.Namespace) -> list[str]:
    """Raise AccessError for what would stop the start-up; the warnings it would log."""
    check_status_file(options.status_file)
    problems = check_pidfile(options.pidfile) if options.pidfile else []
    if options.log_file:
        problems += check_log_file(options.log_file)
    if options.setter_socket or options.setter_port:
        problems += setter_warnings(options.status_file, options.setter_socket or None)
    return [f"warning: {problem}" for problem in problems]


def default_config(args: Sequence[str]) -> str | None:
    """`DEFAULT_CONFIG` when the command line names no config file, and it can be read; else None.

    Asking for ``--help`` or ``--version`` never needs it; otherwise one that
    exists but cannot be read stops the start in one line, rather than
    running on defaults the administrator did not choose.
    """
    if names_config_file(args) or {"-h", "--help", "--version"} & set(args) or not os.path.exists(DEFAULT_CONFIG):
        return None
    try:
        with open(DEFAULT_CONFIG, "rb"):
            return DEFAULT_CONFIG
    except OSError as error:
        print(f"fingerd: cannot read {DEFAULT_CONFIG}: {error.strerror} (name another with -c)", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    """The `fingerd` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = Parser(default_config=default_config(args))
    if "--inetd" in args:
        from fingerd.inetd import main as answer_one

        return answer_one(args, parser)
    try:
        options = parser.parse(args)
    except SystemExit as exit:
        if exit.code:
            Notifier().failed(errno.EINVAL)
        raise
    if options.check_config:
        sys.stdout.write(parser.effective(options))
        sys.stdout.flush()
        return check_as_the_daemon_user(options)
    logs = Logs(options.log_level, options.syslog, options.log_peers)
    log.info("config file: %s", parser.config_file_read(options) or f"none ({DEFAULT_CONFIG} does not exist)")
    log.info("configuration: %s", parser.origins_line())
    log.info("effective configuration: %s", parser.effective_line(options))
    application = Application(options, logs)
    try:
        return application.run()
    except StartupError as error:
        log.critical("%s", error)
        if not logs.to_stderr:
            print(f"fingerd: {error}", file=sys.stderr)
        application.notifier.failed(error.errno)
        return error.status
    finally:
        application.notifier.close()
        logs.close()
