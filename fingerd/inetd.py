"""``fingerd --inetd``: answer the one connection inetd hands over, then exit.

The way netkit's ``in.fingerd`` and cfingerd run: inetd (or xinetd) listens
on port 79, accepts, and starts one process per client (``nowait``) with
the connected socket as standard input and output.  This process::

    take the socket from descriptor 0; put /dev/null on 0, 1 and 2
    drop to --user/--group when started as root
    read the status file once (no watcher: the process lives one query)
    answer exactly as the daemon does: FingerServer.process_request
    wait for that connection to end; flush the access log; exit 0

So the sources, the deadline (``--timeout``), the output safety and the
access log are the daemon's own.  Limits on how many run at once are
inetd's (``instances``, ``per_source`` in xinetd).  Standard error is the
socket, or nothing, so logs go to syslog unless ``--log-file`` names a file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import socket
import sys
import time

from fingerd.config import Parser
from fingerd.daemon.access_log import AccessLog
from fingerd.daemon.identity import IdentityError, drop_privileges
from fingerd.daemon.logs import Logs
from fingerd.finger.server import FingerServer
from fingerd.listen import ListenAddress
from fingerd.users.table import UserTable
from fingerd.users.watcher import StatusFileWatcher

log = logging.getLogger("fingerd")

STOP_GRACE = 2.0
"""Seconds past the connection's own lifetime to wait for the log and the sources."""


class InetdError(Exception):
    """Standard input is not a connected socket."""


def take_connection() -> tuple[socket.socket, tuple]:
    """The client's socket, from descriptor 0, and its address; 0, 1 and 2 then point at /dev/null.

    Every descriptor that refers to the connection must be closed for the
    client to see the end of the reply, and nothing written to standard
    output or error by accident may reach the client.
    """
    fd = os.dup(0)
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        raise InetdError("--inetd: standard input is not a socket (run it from inetd, xinetd or a socket unit)") from None
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        sock.close()
        raise InetdError("--inetd: standard input is not a TCP connection")
    try:
        address = sock.getpeername()
    except OSError:
        sock.close()
        raise InetdError("--inetd: standard input is a socket but no connection") from None
    sock.set_inheritable(False)
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    os.close(null)
    return sock, address


def close_without_reset(sock: socket.socket, wait: float = 1.0) -> None:
    """Close, having read what the client sent (for ``wait`` s at most): unread input would make the close a reset."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(wait)
        while sock.recv(4096):
            pass
    except OSError:
        pass
    sock.close()


def main(args: list[str], parser: Parser) -> int:
    """``fingerd --inetd``: take the connection first, then read the configuration; the exit status.

    The connection comes first because until it is taken, standard error is
    the client's socket: a configuration error must reach syslog, never the
    client.  So logging starts on syslog too.
    """
    try:
        sock, address = take_connection()
    except InetdError as error:
        print(f"fingerd: {error}", file=sys.stderr)  # not a socket: most likely someone at a terminal
        return 2
    Logs("info", syslog=True)  # installs the syslog handler, for what parsing may have to say
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            options = parser.parse(args)
    except SystemExit as exit:
        lines = said.getvalue().strip().splitlines()
        if exit.code:
            log.error("--inetd: %s", lines[-1] if lines else "the configuration was refused")
        close_without_reset(sock)
        return 2 if exit.code else 0
    return serve_one(options, Logs(options.log_level, True, options.log_peers), sock, address)


def serve_one(options: argparse.Namespace, logs: Logs, sock: socket.socket, address: tuple) -> int:
    """Answer the connection taken from standard input; the exit status."""
    from fingerd.app import configured_directory, finger_settings

    try:
        log.debug("%s", drop_privileges(options.user, options.group))
        if options.log_file:
            logs.use_file(options.log_file)
    except (IdentityError, OSError) as error:
        log.error("%s", error)
        close_without_reset(sock)
        return 2
    table = UserTable()
    logging.getLogger("fingerd.status").setLevel(logging.WARNING)  # not "loaded N users" once per query
    StatusFileWatcher(options.status_file, table).reload()
    directory = configured_directory(options, table)
    access = AccessLog(logs)
    host, port = sock.getsockname()[:2]
    finger = FingerServer(ListenAddress(sock.family, host, port), directory, finger_settings(options), access)
    finger.defer_seconds = 0  # inetd accepted at once: no second of the deadline went by in the kernel
    directory.start()
    access.start()
    finger.process_request(sock, address)
    deadline = time.monotonic() + finger.lifetime + STOP_GRACE
    finger.stop(deadline)
    directory.cancel()
    directory.stop(deadline)
    access.stop(deadline)
    return 0
