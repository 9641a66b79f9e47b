"""Claims of docs/attack-surface.md that no other test file shows, against the real daemon where they are about it."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, read_all
from fingerd import client
from fingerd.listen import client_group

STATUS = "alice: Writing the finger daemon\n"

# The daemon, with a bug planted: a query line starting ``crash-acceptor``
# raises on the accepting thread, one starting ``crash-thread`` raises in its
# connection's thread.
CRASHING = (
    sys.executable,
    "-c",
    f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from fingerd.finger.server import FingerServer
from fingerd.cli import main

from_memory = FingerServer._reply_from_memory
reply = FingerServer.reply

def planted_from_memory(self, exchange, cache):
    if exchange.received.startswith(b"crash-acceptor"):
        raise RuntimeError("planted bug on the accepting thread")
    if exchange.received.startswith(b"crash-thread"):
        return None
    return from_memory(self, exchange, cache)

def planted_reply(self, line, deadline):
    if line is not None and line.startswith(b"crash-thread"):
        raise RuntimeError("planted bug in a connection thread")
    return reply(self, line, deadline)

FingerServer._reply_from_memory = planted_from_memory
FingerServer.reply = planted_reply
sys.exit(main())
""",
)


def test_a_silent_client_s_deferred_second_counts_against_its_timeout(start_daemon):
    """TCP_DEFER_ACCEPT holds a silent connection for 1 s; that second is part of its --timeout, not added to it."""
    daemon = start_daemon(STATUS, timeout=2)
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        started = time.monotonic()
        reply = read_all(sock)
        waited = time.monotonic() - started
    assert reply == b"Timed out waiting for the query\r\n"
    assert 1.5 < waited < 2.8, f"answered after {waited:.2f}s; --timeout is 2 s from the connect"
    assert daemon.query(b"alice\r\n") == b"Writing the finger daemon\r\n"


@pytest.mark.parametrize(
    "first, second, same",
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", True),
        ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
        ("::ffff:192.0.2.1", "192.0.2.1", True),
        ("192.0.2.1", "192.0.2.2", False),
        ("fe80::1%eth0", "fe80::1%eth1", False),
    ],
)
def test_per_address_limits_count_ipv6_clients_by_their_64(first, second, same):
    assert (client_group((first, 1)) == client_group((second, 2))) is same


def test_an_unexpected_exception_closes_only_that_connection(start_daemon):
    daemon = start_daemon(STATUS, program=CRASHING)
    assert daemon.query(b"crash-acceptor\r\n") == b""
    assert daemon.query(b"crash-thread\r\n") == b""
    log = daemon.wait_for_log("planted bug in a connection thread")
    assert "planted bug on the accepting thread" in log
    assert "error with a connection from 127.0.0.1" in log and "error answering 127.0.0.1" in log
    assert log.count("Traceback (most recent call last)") >= 2
    assert daemon.query(b"alice\r\n") == b"Writing the finger daemon\r\n"
    assert daemon.text("nobody-here") == "No such user\r\n"
    assert daemon.stop() == 0


def test_the_client_tries_each_address_in_turn_within_one_deadline(start_daemon, ports):
    daemon = start_daemon(STATUS)
    dead = ports.take()
    addresses = [(socket.AF_INET, ("127.0.0.1", dead)), (socket.AF_INET, ("127.0.0.1", daemon.port))]
    reply = client.exchange(addresses, b"alice\r\n", time.monotonic() + 5, 1 << 16)
    assert reply.data == b"Writing the finger daemon\r\n"
    with pytest.raises(client.FingerError):
        client.exchange(addresses, b"alice\r\n", time.monotonic() - 1, 1 << 16)


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_many_spellings_of_one_query_share_one_cached_reply(start_daemon):
    """1,000 ways of writing "list the users" (spaces before the CR LF) cost their keys, not 1,000 copies of the list.

    The list of 20,000 users is about 0.6 MB; before replies were shared by
    query, each spelling kept its own copy (3,000 of a bigger list took a
    daemon to 3.2 GB).
    """
    daemon = start_daemon("".join(f"user{number}: status {number}\n" for number in range(20_000)))
    listing = daemon.query(b"\r\n")
    assert len(listing) > 500_000
    before = resident_mib(daemon.process.pid)
    for spaces in range(1, 1001):
        assert daemon.query(b" " * spaces + b"\r\n") == listing
    grown = resident_mib(daemon.process.pid) - before
    assert grown < 60, f"the daemon grew by {grown:.0f} MiB for 1,000 spellings of one query"
