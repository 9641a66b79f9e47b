"""The daemon behind a trusted proxy: PROXY headers on finger, web and HTTPS; X-Forwarded-For; /healthz; no-query.

The daemon trusts 127.0.0.1 (``proxy-from``); tests act as the proxy by
connecting from there, and as an ordinary client from 127.0.0.2.  The
addresses a header names are documentation ranges that never connect.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import ssl
import struct
import threading
import time

import pytest

from conftest import established_peers, make_certificate, read_all, run_fingerd
from fingerd.proxy import V2_SIGNATURE
from fingerd.sources.directory import Directory
from fingerd.users.table import UserTable
from fingerd.web.pages import Templates
from fingerd.web.server import WebServer, WebSettings
from fingerd.listen import ListenAddress

STATUS = "alice: Writing the finger daemon\nbob: Out to lunch\n"
PROXY = "127.0.0.1"
CLIENT = "127.0.0.2"


def v1(source: str, source_port: int = 4711) -> bytes:
    family = "TCP6" if ":" in source else "TCP4"
    destination = "::1" if ":" in source else "127.0.0.1"
    return f"PROXY {family} {source} {destination} {source_port} 79\r\n".encode()


def v2(source: str | None, source_port: int = 4711, command: int = 0x21) -> bytes:
    if source is None:
        return V2_SIGNATURE + bytes([command, 0x00]) + b"\x00\x00"
    address = ipaddress.ip_address(source)
    family, destination = (0x11, ipaddress.ip_address("127.0.0.1")) if address.version == 4 else (0x21, ipaddress.ip_address("::1"))
    body = address.packed + destination.packed + struct.pack("!HH", source_port, 79)
    return V2_SIGNATURE + bytes([command, family]) + struct.pack("!H", len(body)) + body


def connect(port: int, source: str = PROXY, timeout: float = 10) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def exchange(port: int, data: bytes, source: str = PROXY, pieces: int = 1, pause: float = 0.0) -> bytes:
    """Send ``data`` (in ``pieces``, ``pause`` apart), half-close, and read the whole reply."""
    with connect(port, source) as sock:
        size = -(-len(data) // pieces) if data else 0
        for start in range(0, len(data), size or 1):
            if start:
                time.sleep(pause)
            sock.sendall(data[start : start + size])
        sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def access_lines(daemon) -> list[str]:
    return [line.split("fingerd.access: ", 1)[1] for line in daemon.log().splitlines() if "fingerd.access: " in line]


def web_lines(daemon) -> list[str]:
    return [line.split("fingerd.web: ", 1)[1] for line in daemon.log().splitlines() if "fingerd.web: " in line]


def wait_until(condition, timeout: float = 3.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        time.sleep(0.02)
    return result


def wait_held(daemon, held: list[socket.socket], port: int | None = None) -> None:
    """Until the daemon has accepted every one of ``held`` (its connections' far ends are theirs)."""
    ends = {sock.getsockname() for sock in held}
    wait_until(lambda: ends <= established_peers(daemon.process.pid, port or daemon.port), what="connections held")


@pytest.fixture
def proxied(start_daemon):
    return start_daemon(STATUS, proxy_from=PROXY)


# finger


def test_finger_through_a_trusted_proxy_logs_the_named_client(proxied):
    assert exchange(proxied.port, v1("192.0.2.7") + b"alice\r\n") == b"Writing the finger daemon\r\n"
    assert b"Out to lunch" in exchange(proxied.port, v2("192.0.2.8") + b"/W bob\r\n")
    assert exchange(proxied.port, v1("2001:db8::7") + b"alice\r\n") == b"Writing the finger daemon\r\n"
    assert exchange(proxied.port, v2("2001:db8::8") + b"nobody-here\r\n") == b"No such user\r\n"
    proxied.wait_for_log('2001:db8::8 "nobody-here" no-such-user')
    lines = access_lines(proxied)
    assert '192.0.2.7 "alice" found' in lines
    assert '192.0.2.8 "/W bob" found' in lines
    assert '2001:db8::7 "alice" found' in lines
    assert not [line for line in lines if line.startswith("127.0.0.1")], lines


def test_a_header_in_pieces_is_read_by_the_connection_thread(proxied):
    for header in (v1("192.0.2.21"), v2("192.0.2.22")):
        assert exchange(proxied.port, header + b"alice\r\n", pieces=5, pause=0.05) == b"Writing the finger daemon\r\n"
    # The header whole on the accepting thread, the query a moment later.
    with connect(proxied.port) as sock:
        sock.sendall(v2("192.0.2.23"))
        time.sleep(0.2)
        sock.sendall(b"bob\r\n")
        assert read_all(sock) == b"Out to lunch\r\n"
    log = proxied.wait_for_log('192.0.2.23 "bob" found')
    assert '192.0.2.21 "alice" found' in log and '192.0.2.22 "alice" found' in log


def test_a_forged_header_from_an_untrusted_address_is_an_ordinary_query(proxied):
    assert exchange(proxied.port, v1("198.51.100.7") + b"alice\r\n", source=CLIENT) == b"No such user\r\n"
    listing = exchange(proxied.port, v2("198.51.100.8") + b"alice\r\n", source=CLIENT).decode()
    assert "alice" in listing and "bob" in listing, "a v2 header's first line is empty: the user list"
    proxied.wait_for_log(f'{CLIENT} "" list')
    lines = access_lines(proxied)
    assert f'{CLIENT} "PROXY TCP4 198.51.100.7 127.0.0.1 4711 79" no-such-user' in lines
    assert not [line for line in lines if "198.51.100.7 " in line.split('"')[0] or line.startswith("198.51.100.8")]


def test_a_trusted_proxy_without_a_header_is_closed_and_logged(proxied):
    assert exchange(proxied.port, b"alice\r\n") == b""
    assert exchange(proxied.port, b"PROXY TCP4 192.0.2.1 127.0.0.1 99999 79\r\nalice\r\n") == b""
    assert exchange(proxied.port, V2_SIGNATURE + b"\x21\x11\xff\xff" + b"alice\r\n") == b""
    assert exchange(proxied.port, v1("192.0.2.30")[:20]) == b"", "cut short, then closed"
    with connect(proxied.port) as sock:
        sock.sendall(v1("192.0.2.31")[:15])
        wait_held(proxied, [sock])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # cut short, then reset
    wait_until(lambda: access_lines(proxied).count("127.0.0.1 - bad-proxy-header") == 5, what="five access lines")
    log = proxied.log()
    assert log.count("bad PROXY header") == 5
    assert "the connection was reset inside the header" in log
    assert "127.0.0.1: bad PROXY header: no PROXY header" in log
    assert "v1 port '99999' is not a number from 0 to 65535" in log
    assert "v2 header of 65535 bytes, more than 2048" in log
    assert "the connection ended inside the header" in log
    assert "found" not in "\n".join(access_lines(proxied))
    assert exchange(proxied.port, b"alice\r\n", source=CLIENT) == b"Writing the finger daemon\r\n", "still serving"


def test_local_and_unknown_headers_stand_for_the_proxy(proxied):
    assert exchange(proxied.port, v2(None, command=0x20) + b"alice\r\n") == b"Writing the finger daemon\r\n"
    assert exchange(proxied.port, b"PROXY UNKNOWN\r\nbob\r\n") == b"Out to lunch\r\n"
    assert exchange(proxied.port, v2(None) + b"alice\r\n") == b"Writing the finger daemon\r\n"
    proxied.wait_for_log('127.0.0.1 "bob" found')
    assert access_lines(proxied).count('127.0.0.1 "alice" found') == 2


def hold(port: int, header: bytes, count: int, split: bool = False) -> list[socket.socket]:
    """``count`` connections from the proxy whose header names a client that then sends no query."""
    held = []
    for _ in range(count):
        sock = connect(port)
        if split:
            sock.sendall(header[:10])
            time.sleep(0.05)
            sock.sendall(header[10:])
        else:
            sock.sendall(header)
        held.append(sock)
    return held


def test_max_per_address_counts_the_client_behind_the_proxy(start_daemon):
    daemon = start_daemon(STATUS, proxy_from=PROXY, max_per_address=2, timeout=20)
    held = hold(daemon.port, v1("192.0.2.7"), 2) + hold(daemon.port, v2("192.0.2.9"), 2, split=True)
    try:
        wait_held(daemon, held)
        time.sleep(0.1)  # the split headers' second halves, read by their threads
        for header in (v1("192.0.2.7"), v2("192.0.2.9")):
            assert exchange(daemon.port, header + b"alice\r\n", pieces=2, pause=0.05) == b"Server busy, try again later\r\n"
        assert exchange(daemon.port, v1("192.0.2.8") + b"alice\r\n", pieces=2, pause=0.05) == b"Writing the finger daemon\r\n"
        # The proxy itself is not limited: it holds four connections and is still served.
        assert exchange(daemon.port, v2("192.0.2.10") + b"bob\r\n") == b"Out to lunch\r\n"
        daemon.wait_for_log('192.0.2.10 "bob" found')
        lines = access_lines(daemon)
        assert lines.count("192.0.2.7 - busy") == 1 and lines.count("192.0.2.9 - busy") == 1
    finally:
        for sock in held:
            sock.close()
    # Given back when they end: the clients are served again.
    wait_until(
        lambda: exchange(daemon.port, v1("192.0.2.7") + b"alice\r\n", pieces=2, pause=0.05)
        == b"Writing the finger daemon\r\n",
        what="192.0.2.7 served again",
    )


def test_past_max_connections_the_busy_line_names_the_client_behind_the_proxy(start_daemon):
    daemon = start_daemon(STATUS, proxy_from=PROXY, max_connections=1, timeout=20)
    held = hold(daemon.port, v2("192.0.2.7"), 1)
    try:
        wait_held(daemon, held)
        assert exchange(daemon.port, v2("192.0.2.8") + b"alice\r\n") == b"Server busy, try again later\r\n"
        daemon.wait_for_log("192.0.2.8 - busy")
    finally:
        held[0].close()
    assert "127.0.0.1 - busy" not in daemon.log()


def test_a_connection_closed_without_a_byte_is_no_query(proxied):
    assert exchange(proxied.port, b"", source=CLIENT) == b""
    with connect(proxied.port, CLIENT) as sock:
        time.sleep(0.2)
        sock.shutdown(socket.SHUT_WR)  # accepted by the kernel's deferral timer, its thread sees the end
        assert read_all(sock) == b""
    assert exchange(proxied.port, v1("192.0.2.40")) == b""
    with connect(proxied.port) as sock:
        sock.sendall(v2(None, command=0x20))
        time.sleep(0.2)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # HAProxy's health check
    wait_until(lambda: access_lines(proxied).count("127.0.0.1 - no-query") == 1, what="the LOCAL check logged")
    lines = access_lines(proxied)
    assert lines.count(f"{CLIENT} - no-query") == 2, lines
    assert "192.0.2.40 - no-query" in lines
    assert not [line for line in lines if line.endswith(" list")], lines


def test_an_empty_line_is_still_the_list(proxied):
    listing = exchange(proxied.port, b"\r\n", source=CLIENT).decode()
    assert "alice" in listing and "bob" in listing
    assert "alice" in exchange(proxied.port, v1("192.0.2.41") + b"\r\n").decode()
    proxied.wait_for_log('192.0.2.41 "" list')
    assert f'{CLIENT} "" list' in access_lines(proxied)


def test_proxy_from_rejects_a_bad_network():
    for value in ("10.0.0.0/33", "example.org", ""):
        result = run_fingerd("--proxy-from", value, "--check-config")
        assert result.returncode == 2
        assert f"argument --proxy-from: invalid value {value!r}: an address or a network" in result.stderr
        assert "Traceback" not in result.stderr
    result = run_fingerd("--proxy-from", "10.1.2.3/8", "--proxy-from", "2001:db8::1", "--check-config", "--user", "root")
    assert "proxy-from = [10.0.0.0/8, 2001:db8::1/128]" in result.stdout, result.stdout + result.stderr


# web


def web_request(port: int, head: bytes, source: str = PROXY, tls: ssl.SSLContext | None = None) -> bytes:
    """Send ``head`` (a PROXY header and/or an HTTP request) and read the whole response."""
    sock = connect(port, source)
    if tls is None:
        with sock:
            sock.sendall(head)
            return read_all(sock)
    proxy_header, _, rest = head.partition(b"\x00TLS\x00")
    sock.sendall(proxy_header)
    with tls.wrap_socket(sock, server_hostname="localhost") as secure:
        secure.sendall(rest)
        return read_all(secure)


def get(path: str, headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.0\r\nHost: localhost\r\n{headers}\r\n".encode()


def test_web_takes_proxy_headers_and_x_forwarded_for_from_trusted_peers(start_daemon, ports):
    web_port = ports.take()
    daemon = start_daemon(STATUS, proxy_from="[127.0.0.1, 192.0.2.100]", web_port=web_port)
    assert b"Writing the finger daemon" in web_request(web_port, v1("192.0.2.7") + get("/api/users/alice"))
    assert b"Out to lunch" in web_request(web_port, v2("192.0.2.8") + get("/api/users/bob"))
    assert b"200 OK" in web_request(web_port, get("/", "X-Forwarded-For: 198.51.100.66, 192.0.2.9\r\n"))
    # A PROXY header naming a trusted proxy (192.0.2.100): its X-Forwarded-For is believed in turn.
    chained = v1("192.0.2.100") + get("/~alice", "X-Forwarded-For: 192.0.2.10\r\nX-Forwarded-For: 192.0.2.100\r\n")
    assert b"200 OK" in web_request(web_port, chained)
    assert b"200 OK" in web_request(web_port, get("/api/users", "X-Forwarded-For: unknown\r\n"))
    post = b"POST /RPC2 HTTP/1.0\r\nContent-Length: 0\r\n\r\n"
    assert b"400" not in web_request(web_port, v2("192.0.2.11") + post)[:20]
    daemon.wait_for_log('192.0.2.11 "POST /RPC2 HTTP/1.0"')
    lines = web_lines(daemon)
    for expected in (
        '192.0.2.7 "GET /api/users/alice HTTP/1.0" 200',
        '192.0.2.8 "GET /api/users/bob HTTP/1.0" 200',
        '192.0.2.9 "GET / HTTP/1.0" 200',
        '192.0.2.10 "GET /~alice HTTP/1.0" 200',
        '127.0.0.1 "GET /api/users HTTP/1.0" 200',
    ):
        assert expected in lines, lines
    # A bad header from a trusted peer: closed unanswered, and logged.
    assert web_request(web_port, b"PROXY TCP4 nonsense\r\n" + get("/")) == b""
    daemon.wait_for_log("web: 127.0.0.1: bad PROXY header: v1 header does not have source")


def test_x_forwarded_for_after_a_header_naming_no_client_is_not_believed(start_daemon, ports):
    web_port = ports.take()
    daemon = start_daemon(STATUS, proxy_from=PROXY, web_port=web_port)
    forged = get("/~bob", "X-Forwarded-For: 203.0.113.66\r\n")
    for header in (b"PROXY UNKNOWN\r\n", v2(None)):
        assert b"200 OK" in web_request(web_port, header + forged)
    # LOCAL is the proxy speaking for itself: its own X-Forwarded-For is believed, as with no header at all.
    assert b"200 OK" in web_request(web_port, v2(None, command=0x20) + get("/~bob", "X-Forwarded-For: 192.0.2.5\r\n"))
    daemon.wait_for_log('192.0.2.5 "GET /~bob HTTP/1.0" 200')
    lines = web_lines(daemon)
    assert lines.count('127.0.0.1 "GET /~bob HTTP/1.0" 200') == 2, lines
    assert not [line for line in lines if line.startswith("203.0.113.66")]


def test_web_counts_a_stalled_client_as_soon_as_its_proxy_header_names_it(start_daemon, ports):
    web_port = ports.take()
    daemon = start_daemon(STATUS, proxy_from=PROXY, web_port=web_port, max_per_address=2, timeout=20)
    stalled = [connect(web_port) for _ in range(2)]
    try:
        for sock in stalled:
            sock.sendall(v1("192.0.2.99") + b"GET / HTTP/1.0\r\n")  # the headers never end
        wait_held(daemon, stalled, web_port)
        wait_until(
            lambda: web_request(web_port, v1("192.0.2.99") + get("/")).startswith(b"HTTP/1.0 503"),
            what="a third connection from 192.0.2.99 told busy",
        )
        assert web_request(web_port, v1("192.0.2.98") + get("/")).startswith(b"HTTP/1.0 200")
    finally:
        for sock in stalled:
            sock.close()


def test_a_trickling_proxy_header_on_the_web_is_cut_at_the_timeout(start_daemon, ports):
    web_port = ports.take()
    start_daemon(STATUS, proxy_from=PROXY, web_port=web_port, timeout=1)
    with connect(web_port) as sock:
        started = time.monotonic()
        closed = False
        for byte in v1("192.0.2.7"):
            try:
                sock.sendall(bytes([byte]))
                time.sleep(0.3)
                sock.setblocking(False)
                closed = sock.recv(1) == b""
            except BlockingIOError:
                pass
            except OSError:
                closed = True
            finally:
                sock.setblocking(True)
            if closed:
                break
        assert closed, "a header that never ends is not waited for"
        assert time.monotonic() - started < 2.5


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(start_daemon, ports):
    web_port = ports.take()
    daemon = start_daemon(STATUS, proxy_from=PROXY, web_port=web_port)
    assert b"200 OK" in web_request(web_port, get("/~bob", "X-Forwarded-For: 192.0.2.7\r\n"), source=CLIENT)
    response = web_request(web_port, v1("192.0.2.8") + get("/~bob"), source=CLIENT)
    assert response.startswith(b"HTTP/1.0 400"), "a PROXY line is no request method"
    daemon.wait_for_log(f'{CLIENT} "GET /~bob HTTP/1.0" 200')
    assert not [line for line in web_lines(daemon) if line.startswith("192.0.2.")]


def test_web_counts_the_client_behind_the_proxy(start_daemon, ports):
    web_port = ports.take()
    daemon = start_daemon(STATUS, proxy_from=PROXY, web_port=web_port, max_per_address=1, timeout=20)
    waiting = connect(web_port)  # a POST whose body never comes holds its connection
    waiting.sendall(v2("192.0.2.7") + b"POST /RPC2 HTTP/1.0\r\nContent-Length: 100\r\n\r\n")
    try:
        wait_held(daemon, [waiting], web_port)
        assert web_request(web_port, v2("192.0.2.7") + get("/")).startswith(b"HTTP/1.0 503")
        assert web_request(web_port, get("/", "X-Forwarded-For: 192.0.2.7\r\n")).startswith(b"HTTP/1.0 503")
        assert web_request(web_port, v2("192.0.2.8") + get("/")).startswith(b"HTTP/1.0 200")
    finally:
        waiting.close()
    daemon.wait_for_log('192.0.2.8 "GET / HTTP/1.0" 200')
    assert "fingerd: 192.0.2.7 - busy" in daemon.log(), "told busy as soon as its PROXY header named it"
    assert web_lines(daemon).count('192.0.2.7 "GET / HTTP/1.0" 503') == 1, "told busy once its X-Forwarded-For did"
    # Counted once each, and given back when done (a moment after the client reads the end, hence the retries):
    # one request after another, clients and the proxy itself are always served again.
    for _ in range(4):
        for head, source in ((get("/"), CLIENT), (v1("192.0.2.7") + get("/"), PROXY), (get("/"), PROXY)):
            wait_until(lambda: web_request(web_port, head, source).startswith(b"HTTP/1.0 200"), what="served again")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("tls"))


def test_https_takes_a_proxy_header_before_the_handshake(start_daemon, ports, certificate):
    cert, key = certificate
    https_port = ports.take()
    daemon = start_daemon(STATUS, proxy_from=PROXY, https_port=https_port, tls_cert=str(cert), tls_key=str(key))
    context = ssl.create_default_context(cafile=str(cert))
    for header, client in ((v2("192.0.2.7"), "192.0.2.7"), (v1("192.0.2.8"), "192.0.2.8"), (b"", "127.0.0.1")):
        response = web_request(https_port, header + b"\x00TLS\x00" + get("/api/users/alice"), tls=context)
        assert b"Writing the finger daemon" in response
        daemon.wait_for_log(f'{client} "GET /api/users/alice HTTP/1.0" 200')


def test_https_past_the_connection_limit_tells_a_proxied_client_busy_over_tls(start_daemon, ports, certificate):
    cert, key = certificate
    https_port = ports.take()
    daemon = start_daemon(
        STATUS, proxy_from=PROXY, https_port=https_port, tls_cert=str(cert), tls_key=str(key), timeout=20
    )
    held = []
    try:
        for number in range(WebServer.max_connections):
            sock = connect(https_port)
            sock.sendall(v2(f"192.0.2.{number + 1}"))  # then no handshake
            held.append(sock)
        wait_held(daemon, held, https_port)
        context = ssl.create_default_context(cafile=str(cert))
        response = web_request(https_port, v2("198.51.100.1") + b"\x00TLS\x00" + get("/"), tls=context)
        assert response.startswith(b"HTTP/1.0 503"), response[:80]
    finally:
        for sock in held:
            sock.close()


# health


def test_healthz_is_ok_and_not_logged_at_info(start_daemon, ports):
    web_port = ports.take()
    daemon = start_daemon(STATUS, web_port=web_port)
    response = web_request(web_port, get("/healthz"), source=CLIENT)
    assert response.startswith(b"HTTP/1.0 200 OK\r\n") and response.endswith(b"\r\n\r\nok\n")
    head = web_request(web_port, b"HEAD /healthz HTTP/1.0\r\n\r\n", source=CLIENT)
    assert head.startswith(b"HTTP/1.0 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    web_request(web_port, get("/~alice"), source=CLIENT)
    daemon.wait_for_log(f'{CLIENT} "GET /~alice HTTP/1.0" 200')
    assert "/healthz" not in daemon.log()

    verbose_port = ports.take()
    verbose = start_daemon(STATUS, web_port=verbose_port, log_level="debug")
    web_request(verbose_port, get("/healthz"))
    assert 'DEBUG fingerd.web: 127.0.0.1 "GET /healthz HTTP/1.0" 200' in verbose.wait_for_log("/healthz")


def test_healthz_is_503_while_the_daemon_stops(start_daemon, ports):
    web_port = ports.take()
    daemon = start_daemon(STATUS, web_port=web_port)
    early = connect(web_port, CLIENT)  # accepted now, asks once the stop has begun
    time.sleep(0.2)
    daemon.signal(signal.SIGTERM)
    daemon.wait_for_log("stopping")
    with early:
        early.sendall(get("/healthz"))
        response = read_all(early)
    assert response.startswith(b"HTTP/1.0 503 Service Unavailable\r\n") and response.endswith(b"unavailable\n")
    assert daemon.stop() == 0


def test_healthz_is_503_when_a_service_is_not_alive(ports):
    """The web view reports what the application's check says (a dead service stops the daemon within 0.5 s,
    so the window cannot be reached from outside): a real server, with a check the test turns."""
    alive = threading.Event()
    alive.set()
    address = ListenAddress(socket.AF_INET, "127.0.0.1", ports.take())
    server = WebServer(address, Directory([], UserTable()), Templates.load(), WebSettings(healthy=alive.is_set))
    server.bind()
    server.start()
    try:
        assert web_request(address.port, get("/healthz")).startswith(b"HTTP/1.0 200 OK")
        alive.clear()
        response = web_request(address.port, get("/healthz"))
        assert response.startswith(b"HTTP/1.0 503") and response.endswith(b"\r\n\r\nunavailable\n")
        assert b"alice" not in response
    finally:
        server.stop(time.monotonic() + 2)


def test_the_application_is_healthy_only_while_every_service_it_started_is_alive(tmp_path, ports):
    """`Application.healthy`, what /healthz reports, with the application's own services (not started as a daemon:
    a dead service ends a daemon within half a second, before a client could ask)."""
    from fingerd.app import Application
    from fingerd.config import Parser
    from fingerd.daemon.logs import Logs

    status = tmp_path / "status"
    status.write_text(STATUS)
    options = Parser().parse(
        ["--status-file", str(status), "--finger-port", str(ports.take()), "--web-port", "0", "--setter-socket", ""]
    )
    application = Application(options, Logs("warning", syslog=False))
    try:
        assert not application.healthy(), "nothing started yet"
        application._start_service(application.directory)
        application._start_service(application.access)
        assert application.healthy()
        application.access.stop(time.monotonic() + 2)
        assert not application.access.alive()
        assert not application.healthy()
    finally:
        application.directory.stop(time.monotonic() + 2)
        for listener in application.listeners:
            listener.server_close()
