"""The status file writer against saves by hand that land at the worst moments, on real files.

Each case makes a save by hand land at one precise point of a change: while
a descriptor opened before the rename is still open (an appender between
its open and its write), or between the read and the rename (through the
one step the writer takes there, `_install`).  Every save must end up in
the file, and so must the change.

The cases that need the kernel to say who has the file open for writing
(a read lease) are skipped where the filesystem of the test directory
refuses leases: there only the timing is left, and these cases are exactly
the ones it cannot catch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT
from fingerd.users.statusfile import replace_entry
from fingerd.users.writer import SaveNotCarried, StatusFileWriter

STATUS = b"# board\nalice: hi\nbob: out\n"


@pytest.fixture
def status(tmp_path: Path) -> Path:
    path = tmp_path / "status"
    path.write_bytes(STATUS)
    return path


@pytest.fixture
def leases(lease_refusal: str | None) -> None:
    """Skip a case that needs the kernel to tell open writers."""
    if lease_refusal:
        pytest.skip(f"needs kernel leases: {lease_refusal}")


def in_thread(function) -> tuple[threading.Thread, list]:
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(function()))
    thread.start()
    return thread, outcome


def wait_for_rename(path: Path, fd: int, limit: float = 5.0) -> None:
    """Until ``path`` is no longer the file ``fd`` is open on."""
    deadline = time.monotonic() + limit
    while os.stat(path).st_ino == os.fstat(fd).st_ino:
        assert time.monotonic() < deadline, "the writer never renamed"
        time.sleep(0.001)


def patient_writer(status: Path, writer_wait: float) -> StatusFileWriter:
    """A writer whose patience lasts two full waits.

    The descriptor opened before the change makes the writer wait once
    before the rename (for all of ``writer_wait``) and once after; with the
    default patience the first wait can use it all up, and the second look
    then lands between the hand save's truncate and its write.
    """
    writer = StatusFileWriter(str(status))
    writer.writer_wait = writer_wait
    writer.patience = 3 * writer_wait
    return writer


def test_a_line_written_to_the_old_file_after_the_rename_is_carried_over(status, leases):
    """``cmd >> status``: the shell opened the file before the rename; cmd writes after it."""
    appender = os.open(status, os.O_WRONLY | os.O_APPEND)
    writer = patient_writer(status, 1.0)
    thread, outcome = in_thread(lambda: writer.write("carol", ("set",)))
    wait_for_rename(status, appender)
    os.write(appender, b"dave: appended late\n")
    os.close(appender)
    thread.join(10)
    assert outcome == [True]
    assert status.read_bytes() == STATUS + b"carol: set\ndave: appended late\n"


def test_a_rewrite_of_the_old_file_after_the_rename_becomes_the_base(status, leases):
    """A program that opened the file before the rename rewrites it in place after."""
    rewriter = os.open(status, os.O_WRONLY)
    writer = patient_writer(status, 1.0)
    thread, outcome = in_thread(lambda: writer.write("carol", ("set",)))
    wait_for_rename(status, rewriter)
    os.pwrite(rewriter, b"# BOARD\nalice: HI\n", 0)
    os.close(rewriter)
    thread.join(10)
    assert outcome == [True]
    assert status.read_bytes() == b"# BOARD\nalice: HI\nbob: out\ncarol: set\n"


def test_a_change_that_refuses_a_save_found_after_the_rename_says_it_was_installed(status, leases):
    """Told apart from a refusal before the rename: the new file is in place, and the other save can be put back."""
    rewriter = os.open(status, os.O_WRONLY)
    writer = patient_writer(status, 2.0)
    ours = b"# ours\n"

    def only_over_the_original(current: bytes) -> bytes:
        if current not in (STATUS, ours):
            raise ValueError("changed")
        return ours

    thread, outcome = in_thread(lambda: _outcome(lambda: writer.apply(only_over_the_original)))
    wait_for_rename(status, rewriter)
    os.ftruncate(rewriter, 0)
    os.pwrite(rewriter, b"# theirs\nalice: HI\n", 0)
    os.close(rewriter)
    thread.join(10)
    [late] = outcome
    assert isinstance(late, SaveNotCarried) and isinstance(late.__cause__, ValueError)
    assert (late.saved, late.installed) == (b"# theirs\nalice: HI\n", ours)
    assert status.read_bytes() == ours
    assert writer.apply(late.put_back)
    assert status.read_bytes() == b"# theirs\nalice: HI\n"


def _outcome(function):
    """What ``function`` returns, or the exception (of those a change may end in) it raises."""
    try:
        return function()
    except (SaveNotCarried, ValueError, OSError) as error:
        return error


def test_a_line_appended_before_the_rename_is_kept(status, leases):
    """The appender is between open and write when the writer looks: it waits, then reads again."""
    appender = os.open(status, os.O_WRONLY | os.O_APPEND)
    writer = StatusFileWriter(str(status))
    writer.writer_wait = 2.0
    thread, outcome = in_thread(lambda: writer.write("carol", ("set",)))
    time.sleep(0.2)
    assert os.stat(status).st_ino == os.fstat(appender).st_ino
    os.write(appender, b"dave: appended\n")
    os.close(appender)
    thread.join(10)
    assert outcome == [True]
    assert status.read_bytes() == STATUS + b"dave: appended\ncarol: set\n"


class SaveByHandBeforeRename(StatusFileWriter):
    """Runs ``save`` once, between reading the file and checking it before the rename."""

    def __init__(self, path: str, save) -> None:
        super().__init__(path)
        self.save = save
        self.installs = 0

    def _install(self, *args, **kwargs) -> bool:
        self.installs += 1
        if self.installs == 1:
            self.save()
        return super()._install(*args, **kwargs)


def test_an_editor_save_between_read_and_rename_is_kept(status):
    def save() -> None:
        subprocess.run(["sed", "-i", "s/hi/saved/", str(status)], check=True)

    writer = SaveByHandBeforeRename(str(status), save)
    assert writer.write("carol", ("set",))
    assert writer.installs == 2
    assert status.read_bytes() == STATUS.replace(b"hi", b"saved") + b"carol: set\n"


def test_a_same_size_rewrite_in_the_same_clock_tick_is_seen_by_its_bytes(status):
    """Size and mtime as they were: only the bytes tell."""
    info = os.stat(status)

    def rewrite_and_hide() -> None:
        with open(status, "r+b") as handle:
            handle.write(b"# BOARD")
        os.utime(status, ns=(info.st_atime_ns, info.st_mtime_ns))

    writer = SaveByHandBeforeRename(str(status), rewrite_and_hide)
    assert writer.write("carol", ("set",))
    assert writer.installs == 2
    assert status.read_bytes() == STATUS.replace(b"# board", b"# BOARD") + b"carol: set\n"


def test_a_writer_that_keeps_the_file_open_costs_a_bounded_wait(status):
    """The holder closes only after the change: a wait for it that had no bound would never end."""
    holder = os.open(status, os.O_WRONLY | os.O_APPEND)
    try:
        writer = StatusFileWriter(str(status))
        writer.patience = 1.0
        started = time.monotonic()
        assert writer.write("carol", ("set",))
        elapsed = time.monotonic() - started
    finally:
        os.close(holder)
    assert elapsed < writer.patience + 10, f"waited {elapsed:.1f} s for a writer that never closed"
    assert status.read_bytes() == replace_entry(STATUS, "carol", ("set",))


LEASE_BREAK = """
import fcntl, os, subprocess, sys, time, types
from fingerd.users import writer

path = sys.argv[1]
real = fcntl.fcntl
breaks = []


def open_for_writing_while_leased(fd, command, argument=0):
    \"\"\"The writer's own fcntl, but the first lease it takes is broken by a writer before it is dropped.\"\"\"
    result = real(fd, command, argument)
    if command == fcntl.F_SETLEASE and argument == fcntl.F_RDLCK and not breaks:
        opener = "import os, sys; os.close(os.open(sys.argv[1], os.O_WRONLY))"
        breaks.append(subprocess.Popen([sys.executable, "-c", opener, path]))
        deadline = time.monotonic() + 20
        while real(fd, fcntl.F_GETLEASE) != fcntl.F_UNLCK:
            assert time.monotonic() < deadline, "the lease was never broken"
            time.sleep(0.001)
        time.sleep(0.2)
    return result


writer.fcntl = types.SimpleNamespace(**{**vars(fcntl), "fcntl": open_for_writing_while_leased})
changed = writer.StatusFileWriter(path).write("carol", ("set",))
assert breaks and breaks[0].wait(20) == 0
print("survived", changed)
"""


def test_a_broken_lease_neither_kills_nor_disturbs_the_writer(status, leases):
    """A writer opens the file while the lease is held: the kernel signals the holder, which lives on.

    The kernel's signal for a broken lease is SIGIO unless F_SETSIG says
    otherwise, and SIGIO's default action ends the process: run in a
    child, so that would fail this test instead of ending pytest.  The
    lease is broken once the kernel says so (F_GETLEASE turns F_UNLCK when
    the break has been signalled), so nothing here depends on timing.
    """
    result = subprocess.run(
        [sys.executable, "-c", LEASE_BREAK, str(status)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr}"
    assert result.stdout.strip() == "survived True"
    assert status.read_bytes() == replace_entry(STATUS, "carol", ("set",))


def test_a_missing_file_is_created(tmp_path):
    path = tmp_path / "status"
    assert StatusFileWriter(str(path)).write("carol", ("new",))
    assert path.read_bytes() == b"carol: new\n"
    assert path.stat().st_mode & 0o777 == 0o644


def test_writers_that_find_no_lock_file_at_once_all_get_the_lock(tmp_path):
    """Each tries to create it; those that lose open the one the winner made (8 at once, 50 times: 0 refused)."""
    refused = []
    for round_number in range(50):
        path = tmp_path / f"status{round_number}"
        path.write_bytes(STATUS)
        barrier = threading.Barrier(8)

        def lock() -> None:
            writer = StatusFileWriter(str(path))
            barrier.wait()
            try:
                os.close(writer._open_lock())
            except OSError as error:
                refused.append(error)

        threads = [threading.Thread(target=lock) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert refused == []
