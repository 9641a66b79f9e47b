"""Limits that keep one client, or a shortage of descriptors, from taking the daemon from everyone else.

Clients bind their end to 127.0.0.2 or 127.0.0.3 before connecting, so one
machine plays several client addresses against the real daemon.
"""

from __future__ import annotations

import os
import resource
import socket
import ssl
import subprocess
import sys
import time

import pytest

from conftest import ENTRY, ROOT, make_certificate, read_all

STATUS = "alice: Writing the finger daemon\n"
FINGER_BUSY = b"Server busy, try again later\r\n"


def connect_from(source: str, port: int, timeout: float = 10) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def readable(sock: socket.socket, wait: float) -> bool:
    """True when the daemon sent something (or closed) within ``wait`` seconds."""
    sock.settimeout(wait)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        return False
    finally:
        sock.settimeout(10)
    return True


def hold(port: int, first_bytes: bytes, count: int = 40) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = connect_from("127.0.0.2", port)
        sock.sendall(first_bytes)
        held.append(sock)
        time.sleep(0.01)
    return held


def assert_33rd_is_busy(held: list[socket.socket], busy_prefix: bytes) -> None:
    """The first 32 from one address are still being served; the rest were told busy at once."""
    time.sleep(0.3)
    for sock in held[32:]:
        assert read_all(sock).startswith(busy_prefix)
    assert not any(readable(sock, 0.01) for sock in held[:32])


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("tls"))


def test_one_address_gets_32_finger_connections_and_others_are_answered(start_daemon):
    daemon = start_daemon(STATUS, timeout=20)
    held = hold(daemon.port, b"al")
    try:
        assert_33rd_is_busy(held, FINGER_BUSY)
        with connect_from("127.0.0.3", daemon.port) as other:
            other.sendall(b"alice\r\n")
            assert read_all(other) == b"Writing the finger daemon\r\n"
    finally:
        for sock in held:
            sock.close()
    daemon.wait_for_log("127.0.0.2 - busy")
    time.sleep(0.1)
    assert daemon.log().count("127.0.0.2 - busy") == 8


def test_one_address_gets_32_web_connections_and_others_are_answered(start_daemon, ports):
    web_port = ports.take()
    start_daemon(STATUS, timeout=20, web_port=web_port)
    held = hold(web_port, b"GET / HTTP/1.0\r\n")
    try:
        assert_33rd_is_busy(held, b"HTTP/1.0 503 ")
        with connect_from("127.0.0.3", web_port) as other:
            other.sendall(b"GET /api/users/alice HTTP/1.0\r\n\r\n")
            assert read_all(other).startswith(b"HTTP/1.0 200 ")
    finally:
        for sock in held:
            sock.close()


def test_one_address_gets_32_https_connections_and_is_told_busy_over_tls(start_daemon, ports, certificate):
    cert, key = certificate
    https_port = ports.take()
    start_daemon(STATUS, timeout=20, https_port=https_port, tls_cert=str(cert), tls_key=str(key))
    context = ssl.create_default_context(cafile=str(cert))
    held = hold(https_port, b"", count=32)
    try:
        time.sleep(0.3)
        with context.wrap_socket(connect_from("127.0.0.2", https_port), server_hostname="127.0.0.1") as extra:
            extra.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = read_all(extra)
        assert reply.startswith(b"HTTP/1.0 503 ")
        with context.wrap_socket(connect_from("127.0.0.3", https_port), server_hostname="127.0.0.1") as other:
            other.sendall(b"GET /api/users/alice HTTP/1.0\r\n\r\n")
            assert read_all(other).startswith(b"HTTP/1.0 200 ")
    finally:
        for sock in held:
            sock.close()


def test_no_limit_per_address_with_0(start_daemon):
    daemon = start_daemon(STATUS, timeout=20, max_per_address=0)
    held = hold(daemon.port, b"al")
    try:
        time.sleep(0.3)
        assert not any(readable(sock, 0.01) for sock in held)
    finally:
        for sock in held:
            sock.close()


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_out_of_descriptors_no_acceptor_spins_and_finger_clients_hear_busy(start_daemon, ports):
    web_port, setter_port = ports.take(), ports.take()
    daemon = start_daemon(STATUS, timeout=20, max_connections=20, web_port=web_port, setter_port=setter_port)
    pid = daemon.process.pid
    limit = open_descriptors(pid) + 6
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    held = [connect_from("127.0.0.2", daemon.port) for _ in range(20)]
    held += [connect_from("127.0.0.2", web_port) for _ in range(10)]
    held += [connect_from("127.0.0.2", setter_port) for _ in range(10)]
    try:
        for sock in held[:20]:
            sock.sendall(b"al")
        time.sleep(1.5)
        assert open_descriptors(pid) <= limit
        before = cpu_seconds(pid)
        time.sleep(3)
        spent = cpu_seconds(pid) - before
        assert spent < 0.2, f"{spent:.2f} s of CPU in 3 s"
        for attempt in range(3):
            with connect_from("127.0.0.3", daemon.port) as client:
                client.sendall(b"alice\r\n")
                try:
                    reply = read_all(client)
                except TimeoutError:
                    raise AssertionError(f"attempt {attempt}: {open_descriptors(pid)} fds; {daemon.log()[-1500:]}")
                assert reply in (FINGER_BUSY, b"Writing the finger daemon\r\n")
    finally:
        for sock in held:
            sock.close()
    daemon.wait_for_log("cannot accept a connection: Too many open files")


def run_with_descriptor_limit(limit: int, *args: str) -> subprocess.CompletedProcess:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return subprocess.run(
        [sys.executable, str(ENTRY), *args], cwd=ROOT, capture_output=True, text=True, timeout=20, preexec_fn=lower
    )


def test_a_descriptor_limit_below_the_caps_refuses_to_start(tmp_path, ports):
    status = tmp_path / "status"
    status.write_text(STATUS)
    common = ("--status-file", str(status), "--bind", "127.0.0.1", "--user", "root", "--setter-socket", "")
    result = run_with_descriptor_limit(200, *common, "--finger-port", str(ports.take()), "--web-port", "0")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "--max-connections" in last and "open file limit (200)" in last and "512 finger" in last, last


def test_an_https_client_told_busy_that_never_shakes_hands_is_cut_at_2_s(start_daemon, ports, certificate):
    """The busy reply over TLS has its own short thread, reaped like any connection: a stall holds it 2 s at most."""
    cert, key = certificate
    https_port = ports.take()
    daemon = start_daemon(STATUS, timeout=20, https_port=https_port, tls_cert=str(cert), tls_key=str(key))
    pid = daemon.process.pid
    held = hold(https_port, b"", count=32)
    try:
        time.sleep(0.3)
        baseline = len(os.listdir(f"/proc/{pid}/task"))
        with connect_from("127.0.0.2", https_port) as staller:
            time.sleep(0.3)
            assert len(os.listdir(f"/proc/{pid}/task")) == baseline + 1
            deadline = time.monotonic() + 3.5
            while len(os.listdir(f"/proc/{pid}/task")) > baseline:
                assert time.monotonic() < deadline, "the busy thread outlived its 2 s"
                time.sleep(0.05)
            assert read_all(staller) == b""
    finally:
        for sock in held:
            sock.close()
