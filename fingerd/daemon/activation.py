"""Listening sockets handed over by systemd: socket activation (the ``sd_listen_fds`` protocol).

systemd opens the ports itself (port 79 included) and starts the daemon
with them as descriptors 3, 4, ...: ``LISTEN_PID`` names the process they
are meant for, ``LISTEN_FDS`` how many there are, and ``LISTEN_FDNAMES``
their names, colon-separated (``FileDescriptorName=`` in the .socket unit).
A service whose name is passed serves on that socket instead of binding
one, so the daemon needs neither root nor a capability.

The names are the services': `NAMES`.  One socket passed without a name is
taken for finger; several must be named.  The variables are removed from
the environment once read, so that no child (a ``command`` source) takes
the descriptors for its own.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping, MutableMapping

FIRST_FD = 3
NAMES = ("finger", "web", "https", "tcp-setter")
VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class ActivationError(Exception):
    """What systemd passed cannot be used as it is."""


def passed_descriptors(environ: Mapping[str, str], pid: int) -> list[tuple[int, str]]:
    """The descriptors passed to process ``pid`` and their names; [] when nothing was passed to it."""
    if environ.get("LISTEN_PID", "") != str(pid) or "LISTEN_FDS" not in environ:
        return []
    count_text = environ["LISTEN_FDS"]
    if not count_text.isascii() or not count_text.isdigit() or not 0 < int(count_text) <= 64:
        raise ActivationError(f"LISTEN_FDS is not a count of descriptors: {count_text!r}")
    count = int(count_text)
    names = environ["LISTEN_FDNAMES"].split(":") if environ.get("LISTEN_FDNAMES") else []
    if not names and count == 1:
        names = ["finger"]
    if len(names) != count:
        raise ActivationError(
            f"{count} sockets passed, named {':'.join(names) or 'nothing'}: name each one "
            f"(FileDescriptorName=) {', '.join(NAMES)}"
        )
    for name in names:
        if name not in NAMES:
            raise ActivationError(f"a socket passed is named {name!r}; the names are {', '.join(NAMES)}")
    if len(set(names)) != len(names):
        raise ActivationError(f"two sockets passed with one name: {':'.join(names)}")
    return [(FIRST_FD + offset, name) for offset, name in enumerate(names)]


def take_passed_sockets(environ: MutableMapping[str, str]) -> dict[str, socket.socket]:
    """The listening sockets systemd passed to this process, by service name; {} when none.

    Raises ActivationError for what cannot be used: bad variables, or a
    descriptor that is not a listening stream socket.
    """
    passed = passed_descriptors(environ, os.getpid())
    for variable in VARIABLES:
        environ.pop(variable, None)
    sockets: dict[str, socket.socket] = {}
    for fd, name in passed:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as error:
            raise ActivationError(f"the {name} socket passed (descriptor {fd}) is unusable: {error.strerror}") from None
        sockets[name] = sock
        problem = _unusable(name, sock)
        if problem:
            for opened in sockets.values():
                opened.close()
            raise ActivationError(f"the {name} socket passed (descriptor {fd}) {problem}")
        sock.set_inheritable(False)
    return sockets


def _unusable(name: str, sock: socket.socket) -> str:
    """Why a passed socket cannot serve ``name``, or "".

    The TCP setter takes anyone's word for who is asking, so it must stay on
    loopback (docs/status-file.md, "The tutorial's TCP setter"), whoever
    opened its socket.
    """
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return "is not an IPv4 or IPv6 socket"
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        return "is not a listening stream socket"
    if name == "tcp-setter" and not ipaddress.ip_address(sock.getsockname()[0].partition("%")[0]).is_loopback:
        return f"listens on {sock.getsockname()[0]}; the TCP setter listens on loopback only"
    return ""
