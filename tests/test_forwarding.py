"""Forwarding (``name@host``) between real daemons on loopback, and every way it is refused."""

from __future__ import annotations

import errno
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import OneShotServer, run_fingerd
from fingerd.client import DEFAULT_PORT
from fingerd.finger.answer import Hop, is_public_address
from fingerd.finger.forward import relay_once

A_STATUS = "alice: on A\n"
B_STATUS = "alice: on B\nbob: Out to lunch\n"
ALLOW_LOOPBACK = {"forwarding": "true", "forward_allow": "[127.0.0.1]"}
AUDITED = (sys.executable, str(Path(__file__).resolve().parent / "audit_network.py"))
HOSTILE = (
    b"ok \x1b[2J\x1b]0;title\x07 c1 \xc2\x9b\xc2\x85 bad \xff\xfe caf\xc3\xa9 \xe2\x80\xaertl\r\n"
    b"second\rline\n"
    b"last"
)


class Sink:
    """A listener that accepts every connection and never answers, counting them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def wait_for(self, count: int, limit: float = 10) -> None:
        deadline = time.monotonic() + limit
        while len(self.held) < count:
            assert time.monotonic() < deadline, f"{len(self.held)} connections, want {count}"
            time.sleep(0.02)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def b(start_daemon):
    return start_daemon(B_STATUS)


@pytest.fixture
def a(start_daemon):
    return start_daemon(A_STATUS, **ALLOW_LOOPBACK)


def test_forwards_to_another_daemon(a, b):
    where = f"127.0.0.1:{b.port}"
    assert a.text(f"alice@{where}") == "on B\r\n"
    assert a.text(f"/W alice@{where}") == "Login: alice\r\nPlan:\r\non B\r\n"
    assert a.text(f"@{where}").split("\r\n")[:2] == ["alice             on B", "bob               Out to lunch"]
    assert a.text(f"nobody-here@{where}") == "No such user\r\n"
    a.wait_for_log(f'"alice@{where}" forwarded')
    b.wait_for_log('127.0.0.1 "/W alice" found')


def test_relayed_reply_is_sanitized(a):
    with OneShotServer(HOSTILE) as server:
        reply = a.query(f"alice@127.0.0.1:{server.port}\r\n".encode())
    assert server.received == b"alice\r\n"
    assert reply == (
        b"ok ^[[2J^[]0;title^G c1 \\x9b\\x85 bad \\xff\\xfe caf\xc3\xa9 \\u202ertl\r\nsecond^Mline\r\nlast\r\n"
    )


def test_relayed_reply_is_capped_with_a_marker(a):
    with OneShotServer((b"x" * 99 + b"\n") * 3000) as server:
        reply = a.query(f"alice@127.0.0.1:{server.port}\r\n".encode())
    assert reply.endswith(b"\r\n[reply truncated at 65536 bytes]\r\n")
    body = reply.rsplit(b"[reply", 1)[0].replace(b"\r\n", b"")
    assert len(body) == 65536 - 655, "655 whole lines of 100 bytes, less their line ends, then 36 bytes"
    a.wait_for_log("forwarded")


def test_chain_longer_than_the_limit_is_refused_without_connecting(a):
    with OneShotServer(None) as silent:
        reply = a.text(f"alice@127.0.0.1@127.0.0.1:{silent.port}")
        assert reply == "Forwarding denied: too many hops (at most 1)\r\n"
        assert not silent.was_contacted()
    a.wait_for_log("forward-denied")


def test_forwarding_loop_is_stopped_by_the_chain_limit(start_daemon):
    """Two daemons pointed at each other: each hop uses up one host, and the second daemon's limit ends it."""
    first = start_daemon(A_STATUS, forward_max_hops=3, **ALLOW_LOOPBACK)
    second = start_daemon(B_STATUS, **ALLOW_LOOPBACK)
    one, two = f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"
    assert first.text(f"alice@{two}@{one}@{two}") == "Forwarding denied: too many hops (at most 1)\r\n"
    second.wait_for_log(f'"alice@{two}@{one}" forward-denied')
    assert first.text(f"alice@{one}@{two}") == "on A\r\n", "there and back is one host for each"


def test_forwarding_loop_within_the_limit_ends_after_each_host(start_daemon):
    first = start_daemon(A_STATUS, forward_max_hops=3, **ALLOW_LOOPBACK)
    second = start_daemon(B_STATUS, forward_max_hops=3, **ALLOW_LOOPBACK)
    one, two = f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"
    assert first.text(f"alice@{two}@{one}@{two}") == "on B\r\n"
    second.wait_for_log(f'"alice@{two}@{one}" forwarded')
    first.wait_for_log(f'"alice@{two}" forwarded')
    second.wait_for_log('"alice" found')
    assert first.text(f"alice@{one}@{two}@{one}@{two}") == "Forwarding denied: too many hops (at most 3)\r\n"


@pytest.mark.parametrize("allow", [None, "[finger.example.org]"])
def test_loopback_refused_unless_listed(start_daemon, allow):
    daemon = start_daemon(A_STATUS, forwarding="true", forward_allow=allow)
    with OneShotServer(None) as silent:
        for host in (f"127.0.0.1:{silent.port}", f"localhost:{silent.port}", f"[::ffff:127.0.0.1]:{silent.port}"):
            assert daemon.text(f"alice@{host}") == "Forwarding denied: host not allowed\r\n"
        assert not silent.was_contacted()


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "[::1]", "10.0.0.1", "169.254.169.254", "192.168.1.1", "224.0.0.1", "0.0.0.0", "[fe80::1]"]
)
def test_private_addresses_refused_without_an_allow_list(start_daemon, host):
    daemon = start_daemon(A_STATUS, forwarding="true")
    assert daemon.text(f"alice@{host}") == "Forwarding denied: host not allowed\r\n"


def test_a_name_that_resolves_to_loopback_is_refused_after_resolving(ports):
    """The relay checks what a name resolves to, and connects to nothing when one address is not public."""
    with OneShotServer(None) as silent:
        hop = Hop("localhost", silent.port, b"alice\r\n", listed=False)
        result = relay_once(hop, time.monotonic() + 5, 65536)
        assert (result.lines, result.outcome) == (("Forwarding denied: host not allowed",), "forward-denied")
        assert not silent.was_contacted()
        listed = relay_once(Hop("localhost", ports.take(), b"alice\r\n", listed=True), time.monotonic() + 5, 65536)
        assert listed.lines == ("Forwarding failed: connection refused",)


def test_name_resolving_to_loopback_on_port_79_is_refused(start_daemon):
    daemon = start_daemon(A_STATUS, forwarding="true")
    try:
        listener = socket.create_server(("127.0.0.1", DEFAULT_PORT))
    except OSError as error:
        if error.errno in (errno.EADDRINUSE, errno.EACCES):
            pytest.skip(f"port {DEFAULT_PORT} is not free here")
        raise
    with listener:
        listener.setblocking(False)
        assert daemon.text("alice@localhost") == "Forwarding denied: host not allowed\r\n"
        with pytest.raises(BlockingIOError):
            listener.accept()
    daemon.wait_for_log('"alice@localhost" forward-denied')


def test_other_ports_need_the_allow_list(start_daemon):
    daemon = start_daemon(A_STATUS, forwarding="true")
    assert daemon.text("alice@finger.example.org:25") == "Forwarding denied: host not allowed\r\n"


@pytest.mark.parametrize(
    "query", ["$(id)@127.0.0.1", "al ice@127.0.0.1", "alice@127.0.0.1:0", "alice@", "alice@-bad-", "alice@2130706433"]
)
def test_bad_names_and_hosts_are_refused(a, query):
    assert a.text(query) == "Forwarding denied: not a user name and host\r\n"


def test_failures_get_one_line_each(start_daemon, ports):
    daemon = start_daemon(A_STATUS, forwarding="true", forward_allow="[127.0.0.1, no-such-host.invalid]")
    assert daemon.text(f"alice@127.0.0.1:{ports.take()}") == "Forwarding failed: connection refused\r\n"
    assert daemon.text("alice@no-such-host.invalid") == "Forwarding failed: unknown host\r\n"
    daemon.wait_for_log('"alice@no-such-host.invalid" forward-failed')


def test_forwarding_off_makes_no_lookup_and_no_connection(start_daemon):
    daemon = start_daemon(A_STATUS, program=AUDITED)
    with OneShotServer(None) as silent:
        assert daemon.text(f"alice@forward-target.example:{silent.port}") == "Finger forwarding service denied\r\n"
        assert daemon.text(f"alice@127.0.0.1:{silent.port}") == "Finger forwarding service denied\r\n"
        assert not silent.was_contacted()
    daemon.wait_for_log("forward-denied")
    assert daemon.stop() == 0
    network = [line for line in daemon.log().splitlines() if line.startswith("NETWORK ")]
    assert network, "the audit hook ran: start-up resolves --bind"
    assert not [line for line in network if "forward-target" in line or str(silent.port) in line], network


def test_the_network_audit_sees_a_forward(start_daemon, b):
    """The audit above can fail: with forwarding on, the lookup and the connection show."""
    daemon = start_daemon(A_STATUS, program=AUDITED, forwarding="true", forward_allow="[localhost]")
    assert daemon.text(f"alice@localhost:{b.port}") == "on B\r\n"
    assert daemon.stop() == 0
    log = daemon.log()
    assert f"NETWORK socket.getaddrinfo ('localhost', {b.port}" in log
    assert f"NETWORK socket.connect ('127.0.0.1', {b.port})" in log


def test_forwards_are_bounded_and_the_next_is_busy(start_daemon):
    daemon = start_daemon(A_STATUS, timeout=3, **ALLOW_LOOPBACK)
    sink = Sink()
    clients: list[socket.socket] = []
    try:
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
            sock.sendall(f"alice@127.0.0.1:{sink.port}\r\n".encode())
            clients.append(sock)
        sink.wait_for(4)
        assert daemon.text(f"alice@127.0.0.1:{sink.port}") == "Forwarding busy, try again later\r\n"
        assert daemon.text("alice") == "on A\r\n"
        for sock in clients:
            assert read_reply(sock) == b"Forwarding failed: timed out\r\n"
    finally:
        for sock in clients:
            sock.close()
        sink.close()
    assert len(sink.held) == 4
    daemon.wait_for_log("forward-busy")


def read_reply(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def test_allow_list_entries_are_checked():
    result = run_fingerd("--forward-allow", "finger.example.org:79", "--check-config")
    assert result.returncode == 2
    assert "--forward-allow" in result.stderr
    assert "Traceback" not in result.stderr


def test_allow_list_is_shown_in_canonical_form():
    result = run_fingerd(
        "--forwarding", "--forward-allow", "Finger.Example.ORG.", "--forward-allow", "[0:0::1]", "--check-config"
    )
    assert result.returncode == 0, result.stderr
    assert "forward-allow = [finger.example.org, ::1]" in result.stdout


@pytest.mark.parametrize(
    "address, public",
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("10.0.0.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("224.0.0.1", False),
        ("ff02::1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("240.0.0.1", False),
        ("192.0.2.1", False),
        ("2002:7f00:1::1", False),
        ("64:ff9b::a00:1", False),
    ],
)
def test_public_addresses(address, public):
    assert is_public_address(address) is public


def assert_stop_cuts_the_hop(daemon, port: int, hop_started) -> None:
    """Stop the daemon during a hop to ``port``: the client is told so within 5 s, and the query logged."""
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    with sock:
        sock.sendall(f"alice@127.0.0.1:{port}\r\n".encode())
        hop_started()
        began = time.monotonic()
        assert daemon.stop() == 0
        assert time.monotonic() - began < 5
        assert read_reply(sock) == b"Forwarding failed: server stopping, try again later\r\n"
    assert f'127.0.0.1 "alice@127.0.0.1:{port}" forward-failed' in daemon.log()


def test_a_hop_waiting_for_its_reply_at_stop_is_told_so_and_logged(start_daemon):
    daemon = start_daemon(A_STATUS, timeout=10, **ALLOW_LOOPBACK)
    sink = Sink()
    try:
        assert_stop_cuts_the_hop(daemon, sink.port, lambda: sink.wait_for(1))
    finally:
        sink.close()


def test_a_hop_still_connecting_at_stop_is_told_so_and_logged(start_daemon):
    """A far end whose accept queue is full drops the SYN, so the hop waits in connect: the stop cuts that too."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            daemon = start_daemon(A_STATUS, timeout=10, **ALLOW_LOOPBACK)
            assert_stop_cuts_the_hop(daemon, port, lambda: time.sleep(0.5))
