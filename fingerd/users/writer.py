"""Changing the status file without losing what people save by hand meanwhile.

Every change (a setter's update, ``fingerd edit`` installing a file) is a
read-modify-write under an exclusive ``flock`` on ``<status-file>.lock``, so
concurrent changes never lose each other.  The new file is written to a
temporary file in the same directory, fsynced, given the old file's mode,
and renamed over the old one, so a reader (the watcher, an editor, ``cat``)
only ever sees the old file or the new one.

A person saving by hand takes no lock, so each change checks for them:

* Just before the rename the file must still be the one that was read
  (device, inode, size, mtime; the bytes too while the mtime is too recent
  to show a same-size rewrite in the same clock tick), and nobody may have
  it open for writing.  Otherwise it is read again and the change redone.
* An appender (``>>``: open, write, close) that opened the old file just
  before the rename writes into the old inode just after it.  So the
  descriptor of the file that was read stays open across the rename; once
  nobody has that inode open for writing, and again `settle` later, its
  size and mtime show whether anything landed there.  If something did,
  another round carries it into the new file: bytes appended past what was
  read are appended; any other change becomes the base the change is made
  on again.

Whether anybody has a file open for writing is asked of the kernel: a read
lease (``F_SETLEASE``) cannot be taken while a descriptor open for writing
exists, and is dropped again at once.  Where the kernel refuses leases (a
file owned by another user, a filesystem without them) only the timing is
left.  What can still be lost is said in docs/status-file.md, "What can still be lost".

A save by hand found in the replaced file is carried into the new one by
calling the change again on it.  If the change refuses (``fingerd edit``
installs a file only over the one its user edited), the new file is already
in place: that is `SaveNotCarried`, not the change's own exception, so the
caller knows the file was replaced and what the other save held.

The daemon follows a symbolic link at the status file's path, as its
watcher does.  ``fingerd edit`` run as root must not (whoever can write
the directory could point the link at ``/etc/sudoers``), so a writer made
with ``follow_links=False`` opens the file with ``O_NOFOLLOW`` and checks
and renames over the path itself, never a link's target.

The lock file must be a regular file owned by the user making the change
(or by one of ``lock_owners``): anyone who can create files in the
directory could otherwise plant one, hold a lock on it, and block every
change.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import pwd
import signal
import stat
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

from fingerd.users.statusfile import replace_entry

log = logging.getLogger("fingerd.status")

LOCK_WAIT = 5.0
Change = Callable[[bytes], bytes]
"""Maps the file's bytes to the new bytes; called again whenever the file changed under it."""


@dataclass
class _Snapshot:
    """An open status file and what was read from it."""

    fd: int
    info: os.stat_result
    data: bytes
    read_at_ns: int

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class _Replaced:
    """A file just renamed over (kept open, if there was one) and the bytes that replaced it."""

    snapshot: _Snapshot | None
    read: bytes
    written: bytes

    def close(self) -> None:
        if self.snapshot is not None:
            self.snapshot.close()


class SaveNotCarried(Exception):
    """The change was installed, then a save by hand was found in the file it replaced, and the change refused it.

    ``saved`` is what that save left in the replaced file, ``installed``
    what the change wrote; the new file (``installed``, plus whatever was
    appended to it since) is in place.  `put_back` is the change that puts
    the other save back instead.  The change's own exception is the cause.
    """

    def __init__(self, saved: bytes, installed: bytes) -> None:
        super().__init__("a save by hand landed in the replaced status file and was not carried over")
        self.saved = saved
        self.installed = installed

    def put_back(self, current: bytes) -> bytes:
        """``current`` with the other save in place of the installed bytes it starts with.

        Anything appended to the new file since is kept after it.  A file
        that no longer starts with the installed bytes was saved again by
        someone: that newer save is left alone.
        """
        if not current.startswith(self.installed):
            return current
        appended = current[len(self.installed) :]
        return _append(self.saved, appended) if appended else self.saved


class StatusFileWriter:
    """Applies changes to the status file: set and clear requests, whole new files.

    `attempts` bounds the rereads of a file that keeps changing before the
    rename, and `rounds` the renames that carry saves made meanwhile;
    `writer_wait` and `patience` bound one wait, and all waits of one
    change, for a writer to close the file; `settle` is the second look at
    a replaced file, for an appender between its open and its write; an
    mtime less than `recent_ns` older than the read may hide a same-size
    rewrite, so the bytes are compared too.
    """

    max_file_bytes = 64 * 1024 * 1024
    attempts = 50
    rounds = 10
    settle = 0.002
    writer_wait = 0.5
    patience = 2.0
    poll = 0.01
    recent_ns = 1_000_000_000

    def __init__(self, path: str, lock_owners: Collection[int] | None = None, follow_links: bool = True) -> None:
        """``lock_owners``: the uids a lock file may belong to; None means the caller's own, when it locks.

        The daemon builds its writer before dropping privileges, so the uid
        is looked up at each lock, not here.  With ``follow_links`` False a
        symbolic link at ``path`` is an error (ELOOP), never followed.
        """
        self.path = os.path.abspath(path)
        self.lock_path = self.path + ".lock"
        self.lock_owners = lock_owners
        self.follow_links = follow_links

    def write(self, name: str, status: Sequence[str] | None) -> bool:
        """Set (or, with None, remove) ``name``'s entry; False if nothing changed.

        Raises OSError when the file cannot be read, locked or replaced; the
        file is then unchanged.
        """
        with self.locked():
            return self.apply(lambda data: replace_entry(data, name, status))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive lock every change is made under (waits `LOCK_WAIT` at most)."""
        fd = self._open_lock()
        try:
            _lock(fd)
            yield
        finally:
            os.close(fd)

    def read(self) -> bytes:
        """The file's bytes now, b'' when it does not exist."""
        snapshot = self._open(self._target())
        if snapshot is None:
            return b""
        snapshot.close()
        return snapshot.data

    def apply(self, change: Change) -> bool:
        """Replace the file with ``change(its bytes)``, under `locked`; False if nothing changed.

        ``change`` is called again on newer bytes whenever a save by hand got
        in between, so it must depend on its argument only; it may raise to
        give up: raised before the rename, it reaches the caller as it is,
        and the file is unchanged.  Raises OSError when the file cannot be
        read or replaced; the file is then unchanged.  Once the change is
        in, failing to carry a save by hand into it is logged, not raised,
        except that ``change`` refusing that save raises `SaveNotCarried`
        (the new file stays in place).
        """
        target = self._target()
        until = time.monotonic() + self.patience
        replaced = self._replace(target, change, until)
        if replaced is None:
            return False
        for _ in range(self.rounds):
            try:
                late = self._written_after(replaced, until)
                if late is None:
                    return True
                change = _carry(replaced.read, late, replaced.written, change)
                replaced = self._replace(target, change, until)
            except OSError as error:
                log.warning("%s: a save by hand made during a change is lost: %s", self.path, error.strerror or error)
                return True
            if replaced is None:
                return True
        replaced.close()
        log.warning("%s: saved by hand again and again while being replaced; the last save may be lost", self.path)
        return True

    def _target(self) -> str:
        """The path read and renamed over: a link's target only when links are followed."""
        return os.path.realpath(self.path) if self.follow_links else self.path

    # -- the lock ------------------------------------------------------

    def _open_lock(self) -> int:
        """The lock file, opened without following links, checked by its descriptor."""
        try:
            fd = self._open_or_create_lock()
        except OSError as error:
            raise self._lock_problem(error) from None
        try:
            self._check_lock(os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_or_create_lock(self, tries: int = 3) -> int:
        """Open the lock file, or create it; another writer creating it at the same moment is no error.

        Two setters finding no lock file both try to create it: the one that
        loses opens the file the other made (50 concurrent sets met this).
        """
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
        for _ in range(tries - 1):
            try:
                return os.open(self.lock_path, flags)
            except FileNotFoundError:
                pass
            try:
                return os.open(self.lock_path, flags | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
        return os.open(self.lock_path, flags)

    def _owners(self) -> Collection[int]:
        return (os.geteuid(),) if self.lock_owners is None else self.lock_owners

    def _check_lock(self, info: os.stat_result) -> None:
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EPERM, f"lock file {self.lock_path} is not a regular file; remove it")
        if info.st_uid not in self._owners():
            raise OSError(
                errno.EPERM,
                f"lock file {self.lock_path} belongs to {_who(info.st_uid)}, not {_who(os.geteuid())}; remove it",
            )

    def _lock_problem(self, error: OSError) -> OSError:
        """Say what is wrong with the lock file, in words a person can act on."""
        if error.errno == errno.ELOOP:
            return OSError(errno.ELOOP, f"lock file {self.lock_path} is a symbolic link; remove it")
        if error.errno in (errno.EACCES, errno.EPERM):
            try:
                info = os.lstat(self.lock_path)
            except OSError:
                return error
            try:
                self._check_lock(info)
            except OSError as problem:
                return problem
        return error

    # -- one round: read, change, check, rename -------------------------

    def _open(self, target: str) -> _Snapshot | None:
        """The file, read whole and kept open; None when it does not exist."""
        read_at_ns = time.time_ns()
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        try:
            fd = os.open(target, flags if self.follow_links else flags | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno.ELOOP and not self.follow_links:
                raise OSError(errno.ELOOP, f"{target} is a symbolic link; it is not followed") from None
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "the status file is not a regular file")
            data = self._read_all(fd)
        except BaseException:
            os.close(fd)
            raise
        return _Snapshot(fd, info, data, read_at_ns)

    def _read_all(self, fd: int) -> bytes:
        chunks, size = [], 0
        while chunk := os.pread(fd, 1 << 20, size):
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_file_bytes:
                raise OSError(errno.EFBIG, "the status file is too large")
        return b"".join(chunks)

    def _replace(self, target: str, change: Change, until: float) -> _Replaced | None:
        """Rename ``change(file)`` over the file once no save by hand is under way; None if that changes nothing."""
        for _ in range(self.attempts):
            snapshot = self._open(target)
            current = snapshot.data if snapshot is not None else b""
            installed = False
            try:
                new = change(current)
                if new == current and (snapshot is not None or not new):
                    return None
                installed = self._install(target, new, snapshot, until)
                if installed:
                    return _Replaced(snapshot, current, new)
            finally:
                if snapshot is not None and not installed:
                    snapshot.close()
        raise OSError(errno.EAGAIN, "the status file kept changing while it was being written; nothing was changed")

    def _install(self, target: str, data: bytes, snapshot: _Snapshot | None, until: float) -> bool:
        """Write ``data`` beside the file and rename it over it, unless the file changed since ``snapshot``."""
        directory = os.path.dirname(target)
        fd, temporary = tempfile.mkstemp(prefix=".status.", dir=directory)
        installed = False
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                _keep_owner_and_mode(handle.fileno(), snapshot.info if snapshot is not None else None)
                os.fsync(handle.fileno())
            if self._still_current(target, snapshot, until):
                os.replace(temporary, target)
                installed = True
        finally:
            if not installed:
                os.unlink(temporary)
        if installed:
            _sync_directory(directory)
        return installed

    def _still_current(self, target: str, snapshot: _Snapshot | None, until: float) -> bool:
        """Is ``target`` still the file of ``snapshot``, with the same bytes, and nobody writing it?"""
        try:
            now = os.stat(target) if self.follow_links else os.lstat(target)
        except FileNotFoundError:
            return snapshot is None
        if snapshot is None or (now.st_dev, now.st_ino) != (snapshot.info.st_dev, snapshot.info.st_ino):
            return False
        return self._unchanged(snapshot, until)

    # -- after the rename ----------------------------------------------

    def _written_after(self, replaced: _Replaced, until: float) -> bytes | None:
        """The replaced file's bytes if anything was written to it since it was read, else None; closes it.

        Looked at once nobody has it open for writing, and again `settle`
        later, for an appender that had opened it but not yet written.
        """
        snapshot = replaced.snapshot
        if snapshot is None:
            return None
        try:
            for delay in (0.0, self.settle):
                time.sleep(delay)
                if not self._unchanged(snapshot, until):
                    return self._read_all(snapshot.fd)
            return None
        finally:
            snapshot.close()

    def _unchanged(self, snapshot: _Snapshot, until: float) -> bool:
        """Same size and mtime as when read (and the same bytes, if the mtime is too recent to tell)."""
        self._wait_for_writers(snapshot.fd, until)
        info = os.fstat(snapshot.fd)
        if (info.st_size, info.st_mtime_ns) != (snapshot.info.st_size, snapshot.info.st_mtime_ns):
            return False
        if info.st_mtime_ns + self.recent_ns < snapshot.read_at_ns:
            return True
        return os.pread(snapshot.fd, len(snapshot.data) + 1, 0) == snapshot.data

    def _wait_for_writers(self, fd: int, until: float) -> None:
        """Wait until nobody has the file open for writing, where the kernel can tell.

        At most `writer_wait` each time, and no later than ``until``, so a
        program that keeps the file open costs one change `patience` at most.
        """
        deadline = min(time.monotonic() + self.writer_wait, until)
        while _open_for_writing(fd) and time.monotonic() < deadline:
            time.sleep(self.poll)


def _carry(read: bytes, late: bytes, written: bytes, change: Change) -> Change:
    """The change that brings what was written to the replaced file (``read`` then, ``late`` now) into the new one."""
    if late.startswith(read) and (not read or read.endswith(b"\n")):
        appended = late[len(read) :]
        return lambda current: _append(current, appended)

    def again(current: bytes) -> bytes:
        if not current.startswith(written):
            log.warning("the status file was saved by hand twice at once; the save to the replaced file is lost")
            return current
        try:
            redone = change(late)
        except Exception as refused:
            raise SaveNotCarried(late, written) from refused
        return redone + current[len(written) :]

    return again


def _append(data: bytes, appended: bytes) -> bytes:
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return data + appended


_SETLEASE: int | None = getattr(fcntl, "F_SETLEASE", None)
_SETSIG: int | None = getattr(fcntl, "F_SETSIG", None)


def _open_for_writing(fd: int) -> bool:
    """True if some descriptor has the file open for writing, as far as a read lease tells.

    The lease is dropped at once.  A writer opening the file meanwhile
    breaks it, and the kernel signals the holder: SIGIO by default, which
    would kill the process, so the signal is set to SIGURG (ignored unless
    handled) before each lease; dropping a lease resets it.  Without both
    fcntls (not Linux) no lease is taken and only the timing is left.
    """
    if _SETLEASE is None or _SETSIG is None:
        return False
    try:
        fcntl.fcntl(fd, _SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, _SETLEASE, fcntl.F_RDLCK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    fcntl.fcntl(fd, _SETLEASE, fcntl.F_UNLCK)
    return False


def _lock(fd: int) -> None:
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise OSError(
                    errno.EWOULDBLOCK, "the status file stays locked by another writer (an open 'fingerd edit'?)"
                ) from None
            time.sleep(0.01)


def _sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _who(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
