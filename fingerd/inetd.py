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
import logging
import os
import socket
import sys
import time

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


def serve_one(options: argparse.Namespace, logs: Logs) -> int:
    """Answer the connection on standard input; the exit status."""
    from fingerd.app import configured_directory, finger_settings

    try:
        sock, address = take_connection()
    except InetdError as error:
        print(f"fingerd: {error}", file=sys.stderr)  # not a socket: most likely someone at a terminal
        return 2
    try:
        log.debug("%s", drop_privileges(options.user, options.group))
        if options.log_file:
            logs.use_file(options.log_file)
    except (IdentityError, OSError) as error:
        log.error("%s", error)
        sock.close()
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
