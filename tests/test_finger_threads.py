"""A thread per connection, against the real daemon: slow sources, idle and trickling clients, slow readers, stops.

Each test that fills the daemon with connections also checks that its
thread count, read from ``/proc/PID/task``, comes back to where it was:
a connection's thread ends with its connection.  Those tests lift the
per-address limit (``max-per-address = 0``): all their clients come from
127.0.0.1, and what they measure is the daemon's whole capacity.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import Accounts, finger, read_all, write_owned

STATUS = "alice: Writing the finger daemon\nbob: Out to lunch\n"
BIG = "big: " + "".join(f" line {number:05d} " + "x" * 50 + "\n" for number in range(1000))
"""A status of about 64 KiB."""
TIMED_OUT = b"Timed out waiting for the query\r\n"
LOOKUP_FAILED = b"Lookup failed, try again later\r\n"

needs_accounts = pytest.mark.skipif(not Accounts.possible(), reason="creating accounts needs root and useradd")


def thread_count(daemon) -> int:
    return len(os.listdir(f"/proc/{daemon.process.pid}/task"))


def assert_threads_return(daemon, baseline: int, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while (count := thread_count(daemon)) > baseline:
        assert time.monotonic() < deadline, f"{count} threads, {baseline} before"
        time.sleep(0.05)


def timed_query(daemon, query: bytes) -> tuple[bytes, float]:
    started = time.monotonic()
    reply = daemon.query(query, timeout=10)
    return reply, time.monotonic() - started


def script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def ask_in_threads(port: int, queries: list[bytes]) -> tuple[list[threading.Thread], dict[int, bytes]]:
    replies: dict[int, bytes] = {}

    def ask(number: int, query: bytes) -> None:
        replies[number] = finger(port, query, timeout=20)

    threads = [threading.Thread(target=ask, args=(number, query)) for number, query in enumerate(queries)]
    for thread in threads:
        thread.start()
    return threads, replies


@pytest.fixture(scope="module")
def planner():
    """One real account with a ``~/.plan``, for the passwd source."""
    if not Accounts.possible():
        pytest.skip("creating accounts needs root and useradd")
    with Accounts.temporary() as accounts:
        name, home = accounts.add("thr", gecos="Thread Tester")
        write_owned(home, ".plan", b"Threads, used well\n", name)
        yield name


@needs_accounts
def test_slow_commands_hold_only_their_own_queries(start_daemon, tmp_path, planner):
    started = tmp_path / "started"
    program = script(tmp_path, "slow", f"echo $$ >> {started}; sleep 6; echo late")
    daemon = start_daemon(
        STATUS, source="[file, passwd, command]", command=str(program), command_timeout=8, timeout=10,
        passwd_min_uid=1000,
    )
    askers, replies = ask_in_threads(daemon.port, [f"slow{number}\r\n".encode() for number in range(12)])
    deadline = time.monotonic() + 5
    while not started.exists() or len(started.read_text().split()) < 4:
        assert time.monotonic() < deadline, "four commands should be running"
        time.sleep(0.02)
    time.sleep(0.2)
    reply, took = timed_query(daemon, b"alice\r\n")
    assert reply == b"Writing the finger daemon\r\n" and took < 1, took
    reply, took = timed_query(daemon, planner.encode() + b"\r\n")
    assert b"Threads, used well" in reply and took < 1, (reply, took)
    assert len(started.read_text().split()) == 4, "the other eight wait for a command slot"
    assert replies == {}, "no slow query has been answered yet: the eight wait, they did not fail"
    assert daemon.stop() == 0
    for asker in askers:
        asker.join(10)
    assert sorted(set(replies.values())) == [LOOKUP_FAILED]
    assert len(replies) == 12


def test_stop_during_a_slow_lookup_answers_lookup_failed_and_logs_it(start_daemon, tmp_path):
    started = tmp_path / "started"
    program = script(tmp_path, "stuck", f"echo $$ >> {started}; sleep 30")
    daemon = start_daemon(STATUS, source="[file, command]", command=str(program), command_timeout=9, timeout=10)
    askers, replies = ask_in_threads(daemon.port, [f"stuck{number}\r\n".encode() for number in range(6)])
    deadline = time.monotonic() + 5
    while not started.exists() or len(started.read_text().split()) < 4:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    began = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - began < 5
    for asker in askers:
        asker.join(5)
    assert list(replies.values()) == [LOOKUP_FAILED] * 6
    log = daemon.log()
    for number in range(6):
        assert re.search(rf'127\.0\.0\.1 "stuck{number}" lookup-failed$', log, re.M), log[-3000:]


@needs_accounts
def test_simultaneous_passwd_queries_all_wait_for_a_reader(start_daemon, planner):
    daemon = start_daemon(STATUS, source="[file, passwd]", passwd_min_uid=1000)
    gate = threading.Barrier(20)
    replies: list[bytes] = []
    lock = threading.Lock()

    def ask() -> None:
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
            gate.wait()
            sock.sendall(planner.encode() + b"\r\n")
            reply = read_all(sock)
        with lock:
            replies.append(reply)

    askers = [threading.Thread(target=ask) for _ in range(20)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(15)
    assert len(replies) == 20
    for reply in replies:
        assert reply.startswith(f"Login: {planner}".encode()) and b"Plan:\r\nThreads, used well\r\n" in reply, reply


def test_300_idle_clients_hold_threads_that_end_with_them(start_daemon):
    daemon = start_daemon(STATUS, timeout=20, max_per_address=0)
    daemon.query(b"alice\r\n")
    baseline = thread_count(daemon)
    idle = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(300)]
    try:
        for sock in idle:
            sock.sendall(b"al")
        deadline = time.monotonic() + 5
        while thread_count(daemon) < baseline + 300:
            assert time.monotonic() < deadline, f"{thread_count(daemon)} threads"
            time.sleep(0.05)
        for _ in range(20):
            reply, took = timed_query(daemon, b"bob\r\n")
            assert reply == b"Out to lunch\r\n" and took < 1, took
    finally:
        for sock in idle:
            sock.close()
    assert_threads_return(daemon, baseline)


def test_200_trickling_clients_time_out_and_others_are_served(start_daemon):
    """A byte a second does not extend --timeout (3 s): the reply is there at 4 s, while they still trickle."""
    daemon = start_daemon(STATUS, timeout=3, max_per_address=0)
    daemon.query(b"alice\r\n")
    baseline = thread_count(daemon)
    tricklers = [socket.create_connection(("127.0.0.1", daemon.port), timeout=10) for _ in range(200)]
    began = time.monotonic()
    try:
        for second, byte in enumerate(b"alice"):
            if second == 4:
                time.sleep(max(0.0, began + 4 - time.monotonic()))
                early = [sock.recv(100, socket.MSG_DONTWAIT | socket.MSG_PEEK) for sock in tricklers]
                assert early == [TIMED_OUT] * 200
            for sock in tricklers:
                sock.send(bytes([byte]))
            reply, took = timed_query(daemon, b"bob\r\n")
            assert reply == b"Out to lunch\r\n" and took < 1, took
            time.sleep(max(0.0, began + second + 1 - time.monotonic()))
        replies = [read_all(sock) for sock in tricklers]
    finally:
        for sock in tricklers:
            sock.close()
    assert replies == [TIMED_OUT] * 200, "the bytes sent after the reply did not reset it away"
    assert_threads_return(daemon, baseline)


def test_slow_readers_of_a_64k_reply_all_get_it_whole(start_daemon):
    daemon = start_daemon(STATUS + BIG, timeout=10)
    whole = daemon.query(b"big\r\n")
    assert 60_000 < len(whole) < 70_000
    baseline = thread_count(daemon)
    readers: list[socket.socket] = []
    for _ in range(20):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", daemon.port))
        sock.sendall(b"big\r\n")
        readers.append(sock)
    received = [b""] * len(readers)
    try:
        time.sleep(0.3)
        reply, took = timed_query(daemon, b"alice\r\n")
        assert reply == b"Writing the finger daemon\r\n" and took < 1, took
        open_readers = set(range(len(readers)))
        while open_readers:
            for number in list(open_readers):
                chunk = readers[number].recv(2048)
                received[number] += chunk
                if not chunk:
                    open_readers.discard(number)
            time.sleep(0.01)
    finally:
        for sock in readers:
            sock.close()
    assert received == [whole] * len(readers)
    assert_threads_return(daemon, baseline)


def test_a_reader_that_never_reads_is_cut_at_the_timeout(start_daemon):
    """A 2 MiB list is more than the socket takes at once: the rest waits in a thread, until --timeout."""
    status = "".join(f"user{number}: status number {number} " + "x" * 60 + "\n" for number in range(30000))
    daemon = start_daemon(status, timeout=1)
    daemon.query(b"user1\r\n")
    baseline = thread_count(daemon)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", daemon.port))
        sock.sendall(b"\r\n")
        deadline = time.monotonic() + 2
        while thread_count(daemon) < baseline + 1:
            assert time.monotonic() < deadline, "the rest of the reply waits in a thread"
            time.sleep(0.02)
        assert_threads_return(daemon, baseline, timeout=2.5)


def test_sigterm_with_300_idle_clients_exits_within_5_s_answering_each(start_daemon):
    daemon = start_daemon(STATUS, timeout=20, max_per_address=0)
    daemon.query(b"alice\r\n")
    baseline = thread_count(daemon)
    idle = [socket.create_connection(("127.0.0.1", daemon.port), timeout=10) for _ in range(300)]
    try:
        for sock in idle:
            sock.sendall(b"al")
        deadline = time.monotonic() + 5
        while thread_count(daemon) < baseline + 300:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        began = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.process.wait(10) == 0
        assert time.monotonic() - began < 5
        replies = [read_all(sock) for sock in idle]
    finally:
        for sock in idle:
            sock.close()
    assert replies == [TIMED_OUT] * 300
    assert daemon.log().count('127.0.0.1 "al" timeout') == 300


def test_an_idle_web_client_does_not_use_up_the_finger_service_s_stop(start_daemon, ports):
    """Every service gets the same grace at once: a web client saying nothing holds no finger reply back."""
    web_port = ports.take()
    daemon = start_daemon(STATUS, timeout=20, web_port=web_port)
    daemon.query(b"alice\r\n")
    baseline = thread_count(daemon)
    web = socket.create_connection(("127.0.0.1", web_port), timeout=10)
    silent = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    try:
        silent.sendall(b"al")
        deadline = time.monotonic() + 5
        while thread_count(daemon) < baseline + 2:
            assert time.monotonic() < deadline, "a thread for each client"
            time.sleep(0.02)
        began = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.process.wait(10) == 0
        assert time.monotonic() - began < 5
        assert read_all(silent) == TIMED_OUT
    finally:
        web.close()
        silent.close()
    assert '127.0.0.1 "al" timeout' in daemon.log()
