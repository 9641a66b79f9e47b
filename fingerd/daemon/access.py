"""What the daemon's user must be able to reach, checked as soon as it is that user.

After the privilege drop, a status file the user cannot read would leave the
daemon serving an empty table until someone noticed, and a directory it
cannot write would make every ``fingerd set`` fail.  Both are found here, at
start-up, with ``os.access`` as the running user (so groups and ACLs count
as the kernel counts them), rather than at the first query or the first
update.  An unreadable status file stops start-up; an unwritable directory
only costs the setters, so it is a warning.  So is a directory every user
may write: anyone could plant ``<status-file>.lock`` there, which the
setters refuse to use (it could be held to block them), so every update
would fail.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat


class AccessError(Exception):
    """The running user cannot read what it must serve."""

    errno = errno.EACCES


def running_user() -> str:
    """``nobody (uid 65534)``: who the checks were made as, for the messages."""
    uid = os.getuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def check_status_file(path: str) -> None:
    """Raise AccessError if the status file exists but cannot be read or watched.

    A missing file is fine (it is picked up when it appears), but only if its
    directory can be listed: the watcher needs that to see it appear.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.stat(path)
    except FileNotFoundError:
        if os.path.isdir(directory) and not os.access(directory, os.R_OK | os.X_OK):
            raise AccessError(f"argument --status-file: {running_user()} cannot list {directory}") from None
        return
    except PermissionError:
        raise AccessError(f"argument --status-file: {running_user()} cannot reach {path}") from None
    except OSError as error:
        raise AccessError(f"argument --status-file: {path}: {error.strerror}") from None
    if not os.access(path, os.R_OK):
        raise AccessError(f"argument --status-file: {path} is not readable by {running_user()}")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise AccessError(f"argument --status-file: {running_user()} cannot list {directory}, so edits go unseen")


def check_pidfile(path: str) -> list[str]:
    """Raise AccessError unless the running user can write the pidfile (beside it, then renamed over it).

    A directory that does not exist yet is a warning: the init script and
    systemd (``RuntimeDirectory``) make it for the daemon's user.
    """
    return _check_directory("--pidfile", os.path.dirname(os.path.abspath(path)))


def check_log_file(path: str) -> list[str]:
    """Raise AccessError unless the running user can append to the log file, or create it; warnings as above."""
    if os.path.isfile(path):
        if not os.access(path, os.W_OK):
            raise AccessError(f"argument --log-file: {path} is not writable by {running_user()}")
        return []
    return _check_directory("--log-file", os.path.dirname(os.path.abspath(path)))


def _check_directory(option: str, directory: str) -> list[str]:
    if not os.path.isdir(directory):
        return [f"{option}: {directory} does not exist; it must be made for {running_user()} before the start"]
    if not os.access(directory, os.W_OK | os.X_OK):
        raise AccessError(f"argument {option}: {running_user()} cannot write in {directory}")
    return []


def setter_warnings(status_file: str, setter_socket: str | None) -> list[str]:
    """Problems that only the setters will meet; one sentence each."""
    problems = []
    directory = os.path.dirname(os.path.abspath(status_file))
    if os.path.isdir(directory) and not os.access(directory, os.W_OK | os.X_OK):
        problems.append(
            f"{directory} is not writable by {running_user()}: statuses sent with 'fingerd set' cannot be saved"
        )
    shared = _writable_by_everyone(directory, os.path.abspath(status_file))
    if shared:
        problems.append(shared)
    if setter_socket:
        socket_directory = os.path.dirname(os.path.abspath(setter_socket))
        if not os.access(socket_directory, os.W_OK | os.X_OK):
            problems.append(
                f"{socket_directory} is not writable by {running_user()}: {setter_socket} will be left behind at exit"
            )
    return problems


def _writable_by_everyone(directory: str, status_file: str) -> str:
    """A warning if any user may create files in the status file's directory, else ''."""
    try:
        info = os.stat(directory)
    except OSError:
        return ""
    if not info.st_mode & stat.S_IWOTH:
        return ""
    lock = status_file + ".lock"
    planted = f"create {lock}" if info.st_mode & stat.S_ISVTX else f"replace {status_file} or create {lock}"
    return (
        f"{directory} is writable by every user: anyone may {planted}, and the setters refuse a lock file "
        f"that is not their own, so every 'fingerd set' would fail; keep the status file in a directory only "
        f"{running_user()} can write"
    )
