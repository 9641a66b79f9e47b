"""Whether a user has mail, and since when it is unread, from the spool file's times alone.

finger has always told this from the mail spool (``/var/mail/LOGIN``)
without reading a byte of mail: a file that is missing or empty means no
mail; a modification newer than the last access means mail came after the
owner last read the spool::

    New mail received Mon Nov 30 22:10 2020 (UTC)
         Unread since Mon Nov 30 21:02 2020 (UTC)

and otherwise ``Mail last read Mon Nov 30 22:10 2020 (UTC)``, the wording
and dates of netkit's finger (``lprint.c``).

The spool file is ``lstat``-ed, never opened: a symlink, a FIFO or a
directory in its place counts as no mail, so nothing there can make the
daemon block or tell it about a file the user does not own.  The login must
be a plain file name: one holding ``/`` (or ``..``) never reaches the file
system.  `mail_lines` is pure; only `mail_status` looks at the disk.
"""

from __future__ import annotations

import os
import stat
import time

from fingerd.sources.sessions import LocalTime, format_time

NO_MAIL = "No mail."


def is_spool_name(login: str) -> bool:
    """True when ``login`` can only name a file directly inside the spool directory."""
    return login not in ("", ".", "..") and "/" not in login and "\0" not in login


def mail_status(mail_dir: str, login: str) -> os.stat_result | None:
    """The ``lstat`` of the spool file of ``login``, None unless that is a regular file."""
    if not is_spool_name(login):
        return None
    try:
        info = os.lstat(os.path.join(mail_dir, login))
    except (OSError, ValueError):
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def mail_lines(
    status: os.stat_result | None, now: float | None = None, *, localtime: LocalTime = time.localtime
) -> list[str]:
    """finger's mail lines for a spool file's ``lstat`` (None: no spool file).

    The dates always show the year, as finger's do, so ``now`` changes
    nothing; it is taken so that every formatter is called alike.

    Times are compared in whole seconds, as finger compares ``time_t``:
    a spool written and read within the same second has been read.
    """
    if status is None or not stat.S_ISREG(status.st_mode) or status.st_size == 0:
        return [NO_MAIL]
    received = status.st_mtime_ns // 1_000_000_000
    read = status.st_atime_ns // 1_000_000_000
    if received > read:
        return [
            f"New mail received {format_time(received, True, localtime=localtime)}",
            f"     Unread since {format_time(read, True, localtime=localtime)}",
        ]
    return [f"Mail last read {format_time(read, True, localtime=localtime)}"]
