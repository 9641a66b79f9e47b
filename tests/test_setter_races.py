"""Hand edits and setter writes at the same time lose neither, against the real daemon.

A separate process appends one line at a time the way ``>>`` does (open
with ``O_APPEND``, write, close, no lock) every 10 ms, while this test
stores a status through the setter socket every 5 ms, for 4 seconds.  Every
line the appender wrote and every update the daemon acknowledged must be in
the file afterwards, once.  Each update names its own user, so a lost
update cannot hide behind a later one.  How many there are depends on the
machine's speed; what is required is that none is lost, and that there
were enough updates (`MIN_UPDATES`) for the race to have been run at all.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from conftest import read_all

DURATION = 4.0
APPEND_EVERY = 0.010
SET_EVERY = 0.005
RUNS = 5
MIN_UPDATES = 20

APPENDER = """
import os, sys, time
path, duration, every = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
count = 0
deadline = time.monotonic() + duration
while time.monotonic() < deadline:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, f"hand{count}: appended line {count}\\n".encode())
    os.close(fd)
    count += 1
    time.sleep(every)
print(count)
"""


def store(path: str, name: str, status: str) -> bytes:
    """One update through the setter socket; the daemon's reply line."""
    body = status.encode()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(20)
        sock.connect(path)
        sock.sendall(f"SET {len(body)} {name}\n".encode() + body)
        sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


@pytest.mark.parametrize("run", range(1, RUNS + 1))
def test_appends_by_hand_and_setter_updates_all_survive(start_daemon, tmp_path, run):
    socket_path = str(tmp_path / "setter.sock")
    daemon = start_daemon("# appended by hand while the setter writes\nalice: here\n", setter_socket=socket_path)
    appender = subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(daemon.status_file), str(DURATION), str(APPEND_EVERY)],
        stdout=subprocess.PIPE,
        text=True,
    )
    acknowledged, refused = [], []
    deadline = time.monotonic() + DURATION
    while time.monotonic() < deadline:
        number = len(acknowledged) + len(refused)
        reply = store(socket_path, f"set{number}", f"update {number}")
        (acknowledged if reply.startswith(b"OK") else refused).append(number)
        time.sleep(SET_EVERY)
    out, _ = appender.communicate(timeout=30)
    assert appender.returncode == 0
    appended = int(out)

    lines = Counter(daemon.status_file.read_text().split("\n"))
    lost_appends = [n for n in range(appended) if f"hand{n}: appended line {n}" not in lines]
    lost_updates = [n for n in acknowledged if f"set{n}: update {n}" not in lines]
    doubled = [line for line, count in lines.items() if count > 1 and line]
    counts = (
        f"run {run}: {appended} lines appended, {len(lost_appends)} lost; "
        f"{len(acknowledged)} updates acknowledged, {len(lost_updates)} lost, {len(refused)} refused"
    )
    print(counts)
    assert appended > 0 and len(acknowledged) >= MIN_UPDATES, counts
    assert not refused, [counts, daemon.log()[-2000:]]
    assert not lost_appends and not lost_updates, [counts, lost_appends[:20], lost_updates[:20]]
    assert not doubled, [counts, doubled[:20]]
    last = acknowledged[-1]
    daemon.wait_for_reply(f"set{last}\r\n".encode(), f"update {last}\r\n".encode())
    daemon.wait_for_reply(f"hand{appended - 1}\r\n".encode(), f"appended line {appended - 1}\r\n".encode())


def test_a_command_appending_through_shell_redirection_across_an_update_is_kept(start_daemon, tmp_path):
    """``cmd >> status``: the shell opens the file, then cmd writes, here only once the update has renamed it."""
    socket_path = str(tmp_path / "setter.sock")
    daemon = start_daemon("alice: here\n", setter_socket=socket_path)
    go = tmp_path / "go"
    os.mkfifo(go)
    original = daemon.status_file.stat().st_ino
    with open(daemon.status_file, "ab") as redirected:
        script = 'read x < "$1"; echo "carol: written late"'
        command = subprocess.Popen(["sh", "-c", script, "sh", str(go)], stdout=redirected)
    replies: list[bytes] = []
    setter = threading.Thread(target=lambda: replies.append(store(socket_path, "bob", "updated")))
    setter.start()
    deadline = time.monotonic() + 10
    while daemon.status_file.stat().st_ino == original:
        assert time.monotonic() < deadline, "the update never renamed the file"
        time.sleep(0.001)
    go.write_text("go\n")
    assert command.wait(10) == 0
    setter.join(20)
    assert replies and replies[0].startswith(b"OK")
    assert daemon.status_file.read_text() == "alice: here\nbob: updated\ncarol: written late\n"
    daemon.wait_for_reply(b"carol\r\n", b"written late\r\n")
