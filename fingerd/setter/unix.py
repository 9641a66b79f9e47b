"""The setter on a Unix socket: the kernel says who is asking.

The peer's uid comes from ``SO_PEERCRED``, so nothing the client sends can
claim another identity: a user sets their own entry; root may name anyone.
The socket file is world-writable (any local user may connect); its
directory is created when missing.  A socket left by a crashed run is
replaced, one that answers belongs to a running daemon and is left alone.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import pwd
import socket
import socketserver
import stat
import struct

from fingerd.protocol import is_valid_name
from fingerd.setter.base import SetterMixIn
from fingerd.setter.protocol import SetRequest, SetterError, parse_socket_request, socket_request_complete
from fingerd.users.writer import StatusFileWriter

log = logging.getLogger("fingerd.setter")


class UnixSetterServer(SetterMixIn, socketserver.UnixStreamServer):
    """Accepts status updates from local users on ``--setter-socket``."""

    name = "setter"
    socket_mode = 0o666

    def __init__(self, path: str, writer: StatusFileWriter, timeout: float, owner: tuple[int, int] | None) -> None:
        self.path = path
        self.owner = owner
        self._inode: int | None = None
        self.listen_address = path
        self.init_setter(writer, timeout)
        super().__init__(path, None, bind_and_activate=False)  # type: ignore[arg-type]

    def server_bind(self) -> None:
        self._prepare_directory()
        self._remove_stale_socket()
        # The mode comes from the umask at bind time; a chmod afterwards, by
        # path, could be redirected through a symlink planted in between.
        # Start-up is single-threaded here, so the process-wide umask is safe.
        previous = os.umask(0o777 & ~self.socket_mode)
        try:
            super().server_bind()
        finally:
            os.umask(previous)
        self._inode = os.lstat(self.path).st_ino

    def _prepare_directory(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        if os.path.isdir(directory):
            return
        os.makedirs(directory, mode=0o755)
        if self.owner is not None:
            os.chown(directory, *self.owner)

    def _remove_stale_socket(self) -> None:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise OSError(errno.EEXIST, "exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            try:
                probe.connect(self.path)
            except ConnectionRefusedError:
                os.unlink(self.path)
                return
            except OSError as error:
                raise OSError(errno.EADDRINUSE, f"in use, or not ours to replace ({error.strerror})") from None
        raise OSError(errno.EADDRINUSE, "another daemon is listening on it")

    def server_close(self) -> None:
        """Close, and remove the socket file if it is still the one we made."""
        super().server_close()
        inode, self._inode = self._inode, None
        try:
            if inode is not None and os.lstat(self.path).st_ino == inode:
                os.unlink(self.path)
        except OSError:
            pass

    def answer(self, request: socket.socket, client_address: object) -> str:
        uid = peer_uid(request)
        update = parse_socket_request(self.read_request(request, socket_request_complete))
        return self._authorize_and_apply(uid, user_name(uid), update)

    def _authorize_and_apply(self, uid: int, who: str, update: SetRequest) -> str:
        name = update.name or who
        if not is_valid_name(name):
            raise SetterError(f"your account name {name!r} cannot be fingered")
        if name != who and uid != 0:
            log.warning("setter: %s (uid %d) tried to set the status of %s", who, uid, name)
            raise SetterError(f"only root may set another user's status ({name})")
        return self.apply(dataclasses.replace(update, name=name), who)


def peer_uid(sock: socket.socket) -> int:
    """The connecting process's uid, from the kernel."""
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", credentials)
    return uid


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"
