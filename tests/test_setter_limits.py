"""The setter socket's limits against the real daemon: the length field, the connection limit, a held lock."""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import tempfile
import time
from pathlib import Path

import pytest

from conftest import read_all

STATUS = "alice: hi\n"


@pytest.fixture
def setter(start_daemon):
    """A daemon with its setter socket; ``--timeout`` outlasts the 5 s a writer waits for the lock."""
    with tempfile.TemporaryDirectory(prefix="fingerd-setter-") as name:
        path = Path(name) / "setter.sock"
        daemon = start_daemon(STATUS, setter_socket=str(path), timeout=10)
        daemon.setter_socket = str(path)
        yield daemon


def send(daemon, data: bytes, half_close: bool = True) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(daemon.setter_socket)
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


@pytest.mark.parametrize(
    "length",
    ["\u0663", "\u00b2", "\uff13", "+3", "3_0", "1" * 5000],
    ids=["arabic-indic-3", "superscript-2", "fullwidth-3", "plus", "underscore", "5000-digits"],
)
def test_a_length_not_in_ascii_digits_is_refused(setter, length):
    reply = send(setter, f"SET {length} alice\nabc".encode())
    assert reply == b"ERROR expected 'SET <length> [<name>]' or 'CLEAR [<name>]' on the first line\n"
    assert setter.status_file.read_text() == STATUS
    assert setter.query(b"alice\r\n") == b"hi\r\n"
    assert "Traceback" not in setter.log()


def test_a_length_past_the_limit_is_refused_without_waiting_for_the_status(setter):
    started = time.monotonic()
    reply = send(setter, b"SET 99999999 alice\nabc", half_close=False)
    assert reply == b"ERROR status too long: at most 8192 bytes\n"
    assert time.monotonic() - started < 2, "answered at the first line, not at the timeout"
    assert setter.status_file.read_text() == STATUS


def test_an_ascii_length_still_sets_the_status(setter):
    assert send(setter, b"SET 0003 alice\nabc").startswith(b"OK set status of alice")
    setter.wait_for_reply(b"alice\r\n", b"abc\r\n")


def test_past_64_connections_the_next_is_told_busy_at_once(setter):
    held = []
    try:
        for _ in range(64):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(setter.setter_socket)
            held.append(sock)
        time.sleep(0.3)
        started = time.monotonic()
        assert send(setter, b"CLEAR alice\n") == b"ERROR busy, try again\n"
        assert time.monotonic() - started < 2
    finally:
        for sock in held:
            sock.close()
    assert setter.status_file.read_text() == STATUS


def test_a_held_lock_makes_a_setter_answer_an_error_after_5_s(setter):
    assert send(setter, b"SET 2 alice\nhi").startswith(b"OK")
    lock_path = str(setter.status_file) + ".lock"
    assert stat.S_IMODE(os.stat(lock_path).st_mode) == 0o600, "only the daemon's user can open it to hold it"
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        reply = send(setter, b"SET 3 alice\nbye")
        waited = time.monotonic() - started
    finally:
        os.close(fd)
    assert reply.startswith(b"ERROR cannot update the status file")
    assert 4.5 < waited < 8
    assert setter.status_file.read_text() == STATUS
