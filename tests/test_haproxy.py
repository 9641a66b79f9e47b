"""fingerd behind a real HAProxy: the PROXY protocol (v1 and v2) and ``--proxy-from``.

Two daemons trust 127.0.0.1 (``proxy-from``), allow two connections per
client (``max-per-address``) and tell apart by alice's status which one
answered.  HAProxy (the Debian package; tests/run installs it) runs in the
foreground on loopback ports in front of them: one server with
``send-proxy-v2``, the other with ``send-proxy`` (v1), both health-checked
every 100 ms.  Clients connect to HAProxy from 127.0.0.2 and 127.0.0.3,
so the proxy's own address (127.0.0.1) is never a client's.

What this proves:

* both backends answer through the balancer, and every access line names
  the client's own address, never the balancer's;
* ``max-per-address`` counts each client behind the balancer, not the
  balancer: a client past its limit is told busy while another is served;
* a PROXY header sent straight to a daemon by an untrusted peer is an
  ordinary query, and the address it names is never believed;
* HAProxy's health checks (a header, then a reset) are logged as
  ``no-query``, never as user-list queries;
* ``option httpchk GET /healthz`` marks the web view up, the web access
  line names the client, and the checks stay out of the info-level log.

HAProxy's stats socket tells when it is up, when its checks have passed and
which connections it made to a server; which of those a daemon has accepted
is read from /proc.  Nothing sleeps blindly: every wait polls a condition
with a deadline.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import Daemon, established_peers, read_all

HAPROXY = "/usr/sbin/haproxy"
CHECK_INTERVAL_MS = 100
V2_STATUS = "alice: answered by the v2 backend\n"
V1_STATUS = "alice: answered by the v1 backend\n"
V2_REPLY = b"answered by the v2 backend\r\n"
V1_REPLY = b"answered by the v1 backend\r\n"
BUSY_REPLY = b"Server busy, try again later\r\n"
PROXY_ADDRESS = "127.0.0.1"
CLIENT, OTHER_CLIENT = "127.0.0.2", "127.0.0.3"
ACCESS_LINE = re.compile(r" fingerd\.access: (\S+) (.*)$")


# -- waiting and talking -------------------------------------------------


def wait_until(condition: Callable[[], object], what: str | Callable[[], str], timeout: float = 10.0) -> object:
    """Poll ``condition`` until it returns something true; at the deadline fail with ``what`` (text, or made then)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout}s: {what() if callable(what) else what}")
        time.sleep(0.02)
    return result


def connect(port: int, source: str) -> socket.socket:
    """A connection to a loopback port from the loopback address ``source``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def ask(port: int, data: bytes, source: str) -> bytes:
    """Send ``data`` from ``source`` and read the reply to EOF."""
    with connect(port, source) as sock:
        sock.sendall(data)
        return read_all(sock)


def access_lines(daemon: Daemon) -> list[tuple[str, str]]:
    """The daemon's access lines as (client address, the rest: query and outcome)."""
    return [match.groups() for line in daemon.log().splitlines() if (match := ACCESS_LINE.search(line))]


def wait_for_access(
    daemon: Daemon, condition: Callable[[list[tuple[str, str]]], bool], what: str
) -> list[tuple[str, str]]:
    """The daemon's access lines once ``condition`` holds for them (they are written in batches)."""
    wait_until(lambda: condition(access_lines(daemon)), lambda: f"{what}; access lines: {access_lines(daemon)}")
    return access_lines(daemon)


def queries(lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The access lines of connections that sent something (``no-query`` lines are HAProxy's health checks)."""
    return [line for line in lines if line[1] != "- no-query"]


def proxy_v2_header(source: str, destination: str, source_port: int, destination_port: int) -> bytes:
    """A binary PROXY v2 header, as ``send-proxy-v2`` writes it, for TCP over IPv4."""
    addresses = struct.pack(
        "!4s4sHH", socket.inet_aton(source), socket.inet_aton(destination), source_port, destination_port
    )
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


# -- HAProxy ---------------------------------------------------------------


class HAProxy:
    """HAProxy in the foreground (``-db``) with a config written by the test, and its stats socket."""

    def __init__(self, workdir: Path, stats_port: int, body: str) -> None:
        self.stats_port = stats_port
        self.config = workdir / "haproxy.cfg"
        self.log_path = workdir / "haproxy.log"
        self.config.write_text(
            "global\n"
            "    nbthread 1\n"
            f"    stats socket ipv4@127.0.0.1:{stats_port} level admin\n"
            "defaults\n"
            "    mode tcp\n"
            "    timeout connect 5s\n"
            "    timeout client 30s\n"
            "    timeout server 30s\n"
            "    timeout check 5s\n" + body
        )
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [HAPROXY, "-f", str(self.config), "-db"], stdout=log, stderr=subprocess.STDOUT
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def command(self, line: str) -> str:
        """One command on the stats socket, and its whole answer."""
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=5) as sock:
            sock.sendall(line.encode() + b"\n")
            return read_all(sock).decode()

    def answers(self) -> bool:
        """True once the stats socket answers: HAProxy binds every listener before it serves any."""
        assert self.process.poll() is None, f"haproxy exited with {self.process.returncode}: {self.log()}"
        try:
            return "Pid:" in self.command("show info")
        except OSError:
            return False

    def servers(self) -> dict[str, dict[str, str]]:
        """``backend/server`` -> its row of ``show stat`` (status, check_status, check_code, ...)."""
        header, *rows = self.command("show stat").strip().splitlines()
        names = header.lstrip("# ").split(",")
        table = {}
        for row in rows:
            fields = dict(zip(names, row.split(",")))
            if fields["svname"] not in ("FRONTEND", "BACKEND"):
                table[f"{fields['pxname']}/{fields['svname']}"] = fields
        return table

    def wait_until_checked_up(self, servers: list[str], passed: str) -> None:
        """Wait until each of ``servers`` is UP and its last health check passed (``passed``: L4OK, L7OK)."""

        def all_up() -> bool:
            table = self.servers()
            return all(table[name]["status"] == "UP" and table[name]["check_status"] == passed for name in servers)

        def state() -> str:
            table = self.servers()
            fields = ("status", "check_status", "check_code")
            shown = {name: {field: table[name][field] for field in fields} for name in servers}
            return f"haproxy's checks passing: {shown}"

        wait_until(all_up, state)

    def server_side_addresses(self, frontend: str, source: str) -> set[tuple[str, int]]:
        """The address each session of ``frontend`` from ``source`` connects to its server from (``show sess all``)."""
        found = set()
        for session in re.split(r"\n(?=0x)", self.command("show sess all")):
            if f" source={source}:" not in session or f"frontend={frontend} " not in session:
                continue
            if match := re.search(r"\n\s*backend=\S+ \(.*\) addr=([\d.]+):(\d+)", session):
                found.add((match.group(1), int(match.group(2))))
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def daemon_holds(daemon: Daemon, haproxy: HAProxy, frontend: str, source: str, count: int) -> bool:
    """True once ``daemon`` has accepted the server side of each of the ``count`` sessions from ``source``."""
    sessions = haproxy.server_side_addresses(frontend, source)
    return len(sessions) == count and sessions <= established_peers(daemon.process.pid, daemon.port)


@pytest.fixture
def start_haproxy(tmp_path: Path, ports) -> Iterator[Callable[[str], HAProxy]]:
    """Factory: ``start_haproxy(frontends_and_backends)`` returns a running HAProxy, stopped at the end."""
    assert os.path.exists(HAPROXY), "haproxy is required: apt-get install haproxy (tests/run installs it)"
    started: list[HAProxy] = []

    def start(body: str) -> HAProxy:
        workdir = tmp_path / f"haproxy{len(started)}"
        workdir.mkdir()
        haproxy = HAProxy(workdir, ports.take(), body)
        started.append(haproxy)
        wait_until(haproxy.answers, lambda: f"haproxy listening; its log: {haproxy.log()}")
        return haproxy

    yield start
    for haproxy in started:
        haproxy.stop()


class Balanced:
    """The two daemons and the HAProxy in front of them, with a frontend port for each way in."""

    def __init__(self, v2: Daemon, v1: Daemon, haproxy: HAProxy, frontends: dict[str, int]) -> None:
        self.v2, self.v1, self.haproxy = v2, v1, haproxy
        self.both, self.v2_only, self.v1_only = frontends["both"], frontends["v2_only"], frontends["v1_only"]


@pytest.fixture
def balanced(start_daemon, start_haproxy, ports) -> Balanced:
    """Two daemons behind HAProxy, checked up.

    Frontend ``both`` balances round robin over them; ``v2_only`` and
    ``v1_only`` each reach one of them, deterministically.  Their servers
    ``track`` the checked ones, so only backend ``both`` sends checks.
    """
    v2 = start_daemon(status=V2_STATUS, proxy_from=PROXY_ADDRESS, max_per_address=2)
    v1 = start_daemon(status=V1_STATUS, proxy_from=PROXY_ADDRESS, max_per_address=2)
    frontends = {name: ports.take() for name in ("both", "v2_only", "v1_only")}
    body = "".join(
        f"frontend {name}\n    bind 127.0.0.1:{port}\n    default_backend {name}\n" for name, port in frontends.items()
    )
    check = f"check inter {CHECK_INTERVAL_MS} fastinter {CHECK_INTERVAL_MS} downinter {CHECK_INTERVAL_MS}"
    body += (
        "backend both\n"
        "    balance roundrobin\n"
        f"    server v2 127.0.0.1:{v2.port} send-proxy-v2 {check}\n"
        f"    server v1 127.0.0.1:{v1.port} send-proxy {check}\n"
        "backend v2_only\n"
        f"    server v2 127.0.0.1:{v2.port} send-proxy-v2 track both/v2\n"
        "backend v1_only\n"
        f"    server v1 127.0.0.1:{v1.port} send-proxy track both/v1\n"
    )
    haproxy = start_haproxy(body)
    haproxy.wait_until_checked_up(["both/v2", "both/v1"], passed="L4OK")
    return Balanced(v2, v1, haproxy, frontends)


# -- the tests -------------------------------------------------------------


def test_haproxy_balances_to_both_backends_with_the_clients_own_addresses(balanced):
    for client in (CLIENT, OTHER_CLIENT):
        replies = [ask(balanced.both, b"alice\r\n", source=client) for _ in range(4)]
        assert sorted(replies) == sorted([V2_REPLY, V1_REPLY] * 2), f"round robin from {client}: {replies}"
    # Each backend answered two queries from each client, and logged each under the client's own address,
    # never the balancer's 127.0.0.1 (whose health checks are the no-query lines).
    expected = [(CLIENT, '"alice" found')] * 2 + [(OTHER_CLIENT, '"alice" found')] * 2
    for daemon in (balanced.v2, balanced.v1):
        lines = wait_for_access(daemon, lambda lines: len(queries(lines)) >= len(expected), "four queries logged")
        assert sorted(queries(lines)) == expected, lines


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_max_per_address_counts_each_client_behind_haproxy(balanced, version):
    daemon, reply = (balanced.v2, V2_REPLY) if version == "v2" else (balanced.v1, V1_REPLY)
    frontend = f"{version}_only"
    port = balanced.v2_only if version == "v2" else balanced.v1_only
    idle = [connect(port, CLIENT) for _ in range(2)]
    try:
        # The daemon holds both idle connections: its acceptor counted each before it accepts the next one.
        wait_until(
            lambda: daemon_holds(daemon, balanced.haproxy, frontend, CLIENT, 2),
            lambda: (
                f"the {version} daemon holding both idle connections from {CLIENT}: "
                f"haproxy's side {balanced.haproxy.server_side_addresses(frontend, CLIENT)}, "
                f"the daemon's peers {established_peers(daemon.process.pid, daemon.port)}"
            ),
        )
        # A third connection from the same client, silent like the others, is past its limit.  (One whose
        # query came with the header could be answered from memory, which holds nothing and is never
        # counted: docs/attack-surface.md.)
        with connect(port, CLIENT) as third:
            assert read_all(third) == BUSY_REPLY
        # Another client, at the same time, is served.
        assert ask(port, b"alice\r\n", source=OTHER_CLIENT) == reply
    finally:
        for sock in idle:
            sock.close()
    # The idle ones, closed without a byte sent, are no queries; nothing was the balancer's.
    lines = wait_for_access(
        daemon, lambda lines: lines.count((CLIENT, "- no-query")) == 2, f"two no-query lines from {CLIENT}"
    )
    assert sorted(queries(lines)) == [(CLIENT, "- busy"), (OTHER_CLIENT, '"alice" found')], lines


@pytest.mark.parametrize(
    "forged, named, answer, logged",
    [
        (
            b"PROXY TCP4 198.51.100.7 127.0.0.1 4000 79\r\nalice\r\n",
            "198.51.100.7",
            b"No such user",
            '"PROXY TCP4 198.51.100.7 127.0.0.1 4000 79" no-such-user',
        ),
        # The v2 signature starts with CR LF: to a daemon that does not trust the sender, an empty line.
        (proxy_v2_header("198.51.100.8", "127.0.0.1", 4000, 79) + b"alice\r\n", "198.51.100.8", b"alice", '"" list'),
    ],
    ids=["v1", "v2"],
)
def test_a_forged_proxy_header_sent_directly_is_not_trusted(balanced, forged, named, answer, logged):
    for daemon in (balanced.v2, balanced.v1):
        reply = ask(daemon.port, forged, source=CLIENT)
        assert answer in reply, reply
        lines = wait_for_access(daemon, lambda lines: (CLIENT, logged) in lines, f"{CLIENT} {logged}")
        assert queries(lines) == [(CLIENT, logged)], lines
        assert named not in {host for host, _ in lines}, lines


def test_haproxy_health_checks_are_never_list_queries(balanced):
    # Several check intervals: each daemon has logged five of HAProxy's checks, every one a no-query.
    for daemon in (balanced.v2, balanced.v1):
        lines = wait_for_access(
            daemon, lambda lines: lines.count((PROXY_ADDRESS, "- no-query")) >= 5, "five health checks logged"
        )
        assert set(lines) == {(PROXY_ADDRESS, "- no-query")}, lines
        assert "bad PROXY header" not in daemon.log()
    assert all(row["status"] == "UP" for row in balanced.haproxy.servers().values())


@pytest.mark.parametrize(
    "server_options",
    ["send-proxy-v2", ""],
    ids=["client named by a PROXY header", "client named by X-Forwarded-For"],
)
def test_haproxy_http_checks_use_healthz(start_daemon, start_haproxy, ports, server_options):
    web_port = ports.take()
    daemon = start_daemon(status=V2_STATUS, proxy_from=PROXY_ADDRESS, max_per_address=2, web_port=web_port)
    frontend = ports.take()
    haproxy = start_haproxy(
        "frontend web\n"
        "    mode http\n"
        f"    bind 127.0.0.1:{frontend}\n"
        "    option forwardfor\n"
        "    default_backend web\n"
        "backend web\n"
        "    mode http\n"
        "    option httpchk GET /healthz\n"
        "    http-check expect string ok\n"
        f"    server web 127.0.0.1:{web_port} {server_options} check inter {CHECK_INTERVAL_MS}\n"
    )
    haproxy.wait_until_checked_up(["web/web"], passed="L7OK")
    assert haproxy.servers()["web/web"]["check_code"] == "200"

    # The client's own X-Forwarded-For is its word only: HAProxy appends the address it really came from,
    # and names it in the PROXY header too when it sends one.
    request = b"GET /api/users/alice HTTP/1.0\r\nHost: fingerd\r\nX-Forwarded-For: 198.51.100.9\r\n\r\n"
    reply = ask(frontend, request, source=CLIENT).decode()
    assert re.match(r"HTTP/1\.[01] 200 ", reply), reply
    assert '"answered by the v2 backend"' in reply, reply

    log = daemon.wait_for_log("GET /api/users/alice")
    requests = re.findall(r" fingerd\.web: (\S+) \"GET /api/users/alice HTTP/1\.[01]\" (\d+)$", log, re.MULTILINE)
    assert requests == [(CLIENT, "200")], log
    # L7OK: at least one check had its "ok" from /healthz, logged (or not) before it was sent.
    assert '"GET /healthz' not in daemon.log()
