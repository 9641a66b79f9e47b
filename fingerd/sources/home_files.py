"""Reading a file from a user's home directory without trusting the user.

``~/.plan`` belongs to the user, and the daemon reads it: a symlink to
``/etc/shadow``, a FIFO that never delivers, ``/dev/zero`` or a 10 GB file
are all one ``ln`` or ``mkfifo`` away.  So a home file is opened with
``O_NOFOLLOW`` (a symlink is refused, whoever it points to) and
``O_NONBLOCK`` (opening a FIFO returns at once), then checked *after*
opening, on the descriptor, so nothing can be swapped in between the check
and the read: it must be a regular file owned by the account.  At most
`limit` + 1 bytes are read.
"""

from __future__ import annotations

import os
import stat

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def read_home_file(home: str, name: str, uid: int, limit: int) -> bytes | None:
    """The first ``limit`` + 1 bytes of ``home/name``, or None when it is absent or not safe to read."""
    try:
        descriptor = os.open(os.path.join(home, name), OPEN_FLAGS)
    except OSError:
        return None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != uid:
            return None
        return _read_up_to(descriptor, limit + 1)
    except OSError:
        return None
    finally:
        os.close(descriptor)


def _read_up_to(descriptor: int, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = os.read(descriptor, min(remaining, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def home_file_exists(home: str, name: str) -> bool:
    """True unless ``home/name`` is certainly absent.

    Only "no such file" counts as absent: when the daemon's user may not
    look (a 0700 home), the answer is yes, so a ``~/.nofinger`` the daemon
    cannot see still hides the account.
    """
    try:
        os.lstat(os.path.join(home, name))
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True
