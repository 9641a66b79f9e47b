"""The status file writer against saves by hand that land at the worst moments, on real files.

Each case makes a save by hand land at one precise point of a change: while
a descriptor opened before the rename is still open (an appender between
its open and its write), or between the read and the rename (through the
one step the writer takes there, `_install`).  Every save must end up in
the file, and so must the change.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fingerd.users.statusfile import replace_entry
from fingerd.users.writer import StatusFileWriter

STATUS = b"# board\nalice: hi\nbob: out\n"


@pytest.fixture
def status(tmp_path: Path) -> Path:
    path = tmp_path / "status"
    path.write_bytes(STATUS)
    return path


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


def test_a_line_written_to_the_old_file_after_the_rename_is_carried_over(status):
    """``cmd >> status``: the shell opened the file before the rename; cmd writes after it."""
    appender = os.open(status, os.O_WRONLY | os.O_APPEND)
    writer = StatusFileWriter(str(status))
    writer.writer_wait = 1.0
    thread, outcome = in_thread(lambda: writer.write("carol", ("set",)))
    wait_for_rename(status, appender)
    os.write(appender, b"dave: appended late\n")
    os.close(appender)
    thread.join(10)
    assert outcome == [True]
    assert status.read_bytes() == STATUS + b"carol: set\ndave: appended late\n"


def test_a_rewrite_of_the_old_file_after_the_rename_becomes_the_base(status):
    """A program that opened the file before the rename rewrites it in place after."""
    rewriter = os.open(status, os.O_WRONLY)
    writer = StatusFileWriter(str(status))
    writer.writer_wait = 1.0
    thread, outcome = in_thread(lambda: writer.write("carol", ("set",)))
    wait_for_rename(status, rewriter)
    os.pwrite(rewriter, b"# BOARD\nalice: HI\n", 0)
    os.close(rewriter)
    thread.join(10)
    assert outcome == [True]
    assert status.read_bytes() == b"# BOARD\nalice: HI\nbob: out\ncarol: set\n"


def test_a_line_appended_before_the_rename_is_kept(status):
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
    holder = os.open(status, os.O_WRONLY | os.O_APPEND)
    try:
        writer = StatusFileWriter(str(status))
        started = time.monotonic()
        assert writer.write("carol", ("set",))
        assert time.monotonic() - started < writer.patience + 0.5
    finally:
        os.close(holder)
    assert status.read_bytes() == replace_entry(STATUS, "carol", ("set",))


def test_a_missing_file_is_created(tmp_path):
    path = tmp_path / "status"
    assert StatusFileWriter(str(path)).write("carol", ("new",))
    assert path.read_bytes() == b"carol: new\n"
    assert path.stat().st_mode & 0o777 == 0o644
