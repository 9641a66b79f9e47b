"""The pidfile: written once the daemon is ready, removed when it stops.

It is written after the privilege drop, as the daemon's own user, so the
directory holding it must belong to that user; writing as root into a
directory another user controls would invite a symlink attack.
"""

from __future__ import annotations

import errno
import os


class PidFileError(Exception):
    """The pidfile names a running process, or cannot be written."""

    def __init__(self, message: str, error_number: int) -> None:
        super().__init__(message)
        self.errno = error_number


class PidFile:
    """The file a service manager or init script reads to find the daemon."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._written = False

    def write(self) -> None:
        """Record this process; refuse if another live process is recorded."""
        other = self._recorded_pid()
        if other and other != os.getpid() and _is_running(other):
            message = f"{self.path} names a running process ({other}); is fingerd already running?"
            raise PidFileError(message, errno.EEXIST)
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(b"%d\n" % os.getpid())
            os.replace(temporary, self.path)
        except OSError as error:
            raise PidFileError(f"cannot write pidfile {self.path}: {error.strerror}", error.errno) from None
        self._written = True

    def remove(self) -> None:
        """Remove the file if it still names this process."""
        if self._written and self._recorded_pid() == os.getpid():
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def _recorded_pid(self) -> int:
        try:
            with open(self.path, "rb") as handle:
                return int(handle.read(32).strip() or b"0")
        except (OSError, ValueError):
            return 0


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
