"""Changing one user's entry in the status file, for the setters.

Read-modify-write under an exclusive `flock` on ``<status-file>.lock``, so
concurrent setters never lose each other's updates; the new file is written
to a temporary file in the same directory, fsynced, given the old file's
mode, and renamed over the old one, so a reader (the watcher, an editor,
``cat``) only ever sees the old file or the new one.  The watcher then
publishes the change like any other save.

A person editing the file by hand takes no lock; a save that lands between
our read and our rename can be lost (one of the two writes wins), as with
any two editors.  Everything else in the file is kept byte for byte.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Sequence

from fingerd.users.statusfile import replace_entry

LOCK_WAIT = 5.0


class StatusFileWriter:
    """Applies set and clear requests to the status file."""

    max_file_bytes = 64 * 1024 * 1024

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.lock_path = self.path + ".lock"

    def write(self, name: str, status: Sequence[str] | None) -> bool:
        """Set (or, with None, remove) ``name``'s entry; False if nothing changed.

        Raises OSError when the file cannot be read, locked or replaced; the
        file is then unchanged.
        """
        lock = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            self._lock(lock)
            target = os.path.realpath(self.path)
            old, info = self._read(target)
            new = replace_entry(old, name, status)
            if new == old:
                return False
            self._replace(target, new, info)
            return True
        finally:
            os.close(lock)

    @staticmethod
    def _lock(fd: int) -> None:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OSError(errno.EWOULDBLOCK, "the status file stays locked by another writer") from None
                time.sleep(0.01)

    def _read(self, target: str) -> tuple[bytes, os.stat_result | None]:
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return b"", None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "the status file is not a regular file")
            data = handle.read(self.max_file_bytes + 1)
        if len(data) > self.max_file_bytes:
            raise OSError(errno.EFBIG, "the status file is too large")
        return data, info

    @staticmethod
    def _replace(target: str, data: bytes, old: os.stat_result | None) -> None:
        directory = os.path.dirname(target)
        fd, temporary = tempfile.mkstemp(prefix=".status.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                _keep_owner_and_mode(handle.fileno(), old)
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
        directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)


def _keep_owner_and_mode(fd: int, old: os.stat_result | None) -> None:
    """Give the new file the old one's mode, and its owner where we may."""
    if old is None:
        os.fchmod(fd, 0o644)
        return
    try:
        os.fchown(fd, old.st_uid, old.st_gid)
    except PermissionError:
        pass
    os.fchmod(fd, stat.S_IMODE(old.st_mode))
