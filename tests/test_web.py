"""The web view, JSON API, XML-RPC and HTTPS against the real daemon process."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import ssl
import time
import xmlrpc.client

import pytest

from conftest import listening_sockets, make_certificate, read_all, run_fingerd
from fingerd.web.handler import SECURITY_HEADERS

STATUS = """\
alice: Writing the finger daemon
bob: Out to lunch
carol:
 first line of a plan
   indented art
mallory: <script>window.pwned = 1</script><img src=x onerror="window.pwned=2"> & "quotes"
eve: escape \x1b[31mred\x1b[0m and rtl \u202eevil
"""


@pytest.fixture
def web(start_daemon, ports):
    port = ports.take()
    daemon = start_daemon(STATUS, web_port=port)
    daemon.web_port = port
    return daemon


def request(port: int, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response, data


def get(port: int, path: str, headers: dict | None = None):
    return request(port, "GET", path, headers)


def test_index_lists_users_with_links(web):
    response, body = get(web.web_port, "/")
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    page = body.decode()
    for name in ("alice", "bob", "carol"):
        assert f'<a href="/~{name}">{name}</a>' in page
    assert "Writing the finger daemon" in page
    assert "indented art" not in page, "the list shows first lines only"


@pytest.mark.parametrize("path", ["/carol", "/~carol"])
def test_user_page_has_the_whole_status(web, path):
    response, body = get(web.web_port, path)
    assert response.status == 200
    assert "first line of a plan\n  indented art</pre>" in body.decode()


@pytest.mark.parametrize("path", ["/nobody-here", "/~nobody-here", "/~", "/favicon.ico", "/api", "/a/b"])
def test_unknown_is_404_no_such_user(web, path):
    response, body = get(web.web_port, path)
    assert response.status == 404
    assert "No such user" in body.decode()


def test_every_value_is_escaped(web):
    for path in ("/", "/~mallory"):
        page = get(web.web_port, path)[1].decode()
        assert "<script>window" not in page
        assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in page
        assert "&lt;img src=x onerror=&quot;window.pwned=2&quot;&gt; &amp; &quot;quotes&quot;" in page


def test_control_characters_are_shown_as_on_finger(web):
    page = get(web.web_port, "/~eve")[1].decode()
    assert "\x1b" not in page and "\u202e" not in page
    assert "escape ^[[31mred^[[0m and rtl \\u202eevil" in page


def test_security_headers_on_every_response(web):
    for method, path in (("GET", "/"), ("GET", "/~nobody-here"), ("GET", "/api/users"), ("DELETE", "/")):
        response, _ = request(web.web_port, method, path)
        policy = response.getheader("Content-Security-Policy")
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert response.getheader("X-Content-Type-Options") == "nosniff"
        assert response.getheader("Server") == "fingerd"


def test_head_has_headers_and_no_body(web):
    response, body = request(web.web_port, "HEAD", "/~alice")
    assert response.status == 200
    assert int(response.getheader("Content-Length")) > 0
    assert body == b""


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"])
def test_other_methods_are_405(web, method):
    response, _ = request(web.web_port, method, "/")
    assert response.status == 405
    assert response.getheader("Allow") == "GET, HEAD, POST"


def test_post_outside_rpc_is_405(web):
    response, _ = request(web.web_port, "POST", "/", body=b"x")
    assert response.status == 405
    assert response.getheader("Allow") == "GET, HEAD"


def test_json_api(web):
    response, body = get(web.web_port, "/api/users")
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/json; charset=utf-8"
    users = json.loads(body)
    assert users["alice"] == "Writing the finger daemon"
    assert users["carol"] == "first line of a plan\n  indented art"
    response, body = get(web.web_port, "/api/users/bob")
    assert json.loads(body) == {"name": "bob", "status": "Out to lunch"}
    response, body = get(web.web_port, "/api/users/nobody-here")
    assert response.status == 404
    assert json.loads(body) == {"error": "No such user"}


def test_json_etag_gives_304_until_the_table_changes(web):
    response, _ = get(web.web_port, "/api/users")
    etag = response.getheader("ETag")
    assert etag
    response, body = get(web.web_port, "/api/users", {"If-None-Match": etag})
    assert response.status == 304 and body == b""
    web.status_file.write_text("alice: changed\n")
    deadline = time.monotonic() + 2
    while get(web.web_port, "/api/users", {"If-None-Match": etag})[0].status == 304:
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize(
    "path",
    [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/~..%2f..%2fetc%2fpasswd",
        "/static/../../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/layout.html",
        "/api/users/..%2f..%2fetc%2fpasswd",
        "//etc/passwd",
    ],
)
def test_traversal_reaches_no_file(web, path):
    response, body = get(web.web_port, path)
    assert response.status == 404
    assert b"root:" not in body


def test_static_files(web):
    response, body = get(web.web_port, "/static/live.js")
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/javascript; charset=utf-8"
    assert b"textContent" in body
    assert get(web.web_port, "/static/style.css")[0].getheader("Content-Type") == "text/css; charset=utf-8"


def test_xmlrpc(web):
    proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{web.web_port}/RPC2")
    assert proxy.getUser("alice") == "Writing the finger daemon"
    assert proxy.getUser("carol") == "first line of a plan\n  indented art"
    assert proxy.getUser("nobody-here") == "No such user"
    assert proxy.getUser("../../etc/passwd") == "No such user"
    assert proxy.getUser("eve") == "escape ^[[31mred^[[0m and rtl \\u202eevil"
    assert proxy.getUsers() == ["alice", "bob", "carol", "eve", "mallory"]


def test_xmlrpc_faults_do_not_hurt_the_server(web):
    proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{web.web_port}/RPC2")
    with pytest.raises(xmlrpc.client.Fault):
        proxy.noSuchMethod()
    with pytest.raises(xmlrpc.client.Fault):
        proxy.getUser()
    response, body = request(web.web_port, "POST", "/RPC2", {"Content-Type": "text/xml"}, b"<not xml")
    assert response.status == 200 and b"<fault>" in body
    assert proxy.getUser("bob") == "Out to lunch"


def test_xmlrpc_body_limits(web):
    response, _ = request(web.web_port, "POST", "/RPC2", {"Content-Length": str(10 << 20)}, b"")
    assert response.status == 413
    with socket.create_connection(("127.0.0.1", web.web_port), timeout=10) as sock:
        sock.sendall(b"POST /RPC2 HTTP/1.0\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.0 411")


def test_request_line_and_header_limits(web):
    with socket.create_connection(("127.0.0.1", web.web_port), timeout=10) as sock:
        sock.sendall(b"GET /" + b"a" * 20000 + b" HTTP/1.0\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.0 414")
    with socket.create_connection(("127.0.0.1", web.web_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n" + b"X-Filler: " + b"b" * 1000 + b"\r\n" * 1)
        sock.sendall((b"X-More: " + b"c" * 1000 + b"\r\n") * 20 + b"\r\n")
        assert read_all(sock).startswith(b"HTTP/1.0 431")
    assert get(web.web_port, "/")[0].status == 200


def test_idle_clients_do_not_block_the_web_view(web):
    idle = [socket.create_connection(("127.0.0.1", web.web_port)) for _ in range(20)]
    try:
        started = time.monotonic()
        assert get(web.web_port, "/~alice")[0].status == 200
        assert time.monotonic() - started < 2
    finally:
        for sock in idle:
            sock.close()


def test_busy_past_the_connection_limit(web):
    idle = [socket.create_connection(("127.0.0.1", web.web_port)) for _ in range(64)]
    try:
        time.sleep(0.3)
        response, body = get(web.web_port, "/")
        assert response.status == 503
        assert body == b"Server busy, try again later\n"
        assert all(response.getheader(name) == value for name, value in SECURITY_HEADERS)
        assert response.getheader("Server") == "fingerd"
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 3
    while get(web.web_port, "/")[0].status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_web_port_zero_disables_it(start_daemon, ports):
    web_port = ports.take()
    with_web = start_daemon(STATUS, web_port=web_port)
    assert {port for _, port in listening_sockets(with_web.process.pid)} == {with_web.port, web_port}
    without = start_daemon(STATUS, web_port=0)
    assert {port for _, port in listening_sockets(without.process.pid)} == {without.port}


def test_each_request_is_logged(web):
    get(web.web_port, "/~alice")
    assert '127.0.0.1 "GET /~alice HTTP/1.1" 200' in web.log()


def test_template_override(start_daemon, ports, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    templates.joinpath("user.html").write_text("<h2>Custom $name</h2><pre>$status</pre>")
    port = ports.take()
    daemon = start_daemon(STATUS, web_port=port, templates=str(templates))
    page = get(port, "/~mallory")[1].decode()
    assert "<h2>Custom mallory</h2>" in page
    assert "&lt;script&gt;" in page
    assert "finger@" in get(port, "/")[1].decode(), "other templates keep their packaged form"
    assert daemon.query(b"alice\r\n")


def test_bad_template_is_a_startup_error(tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    templates.joinpath("index.html").write_text("<p>$no_such_placeholder</p>")
    result = run_fingerd("--status-file", str(tmp_path / "status"), "--templates", str(templates), "--check-config")
    assert result.returncode == 2
    assert "--templates" in result.stderr.splitlines()[-1]
    assert "no_such_placeholder" in result.stderr


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("tls"))


def test_https_serves_the_same_site(start_daemon, ports, certificate):
    cert, key = certificate
    web_port, https_port = ports.take(), ports.take()
    start_daemon(STATUS, web_port=web_port, https_port=https_port, tls_cert=str(cert), tls_key=str(key))
    context = ssl.create_default_context(cafile=str(cert))
    connection = http.client.HTTPSConnection("127.0.0.1", https_port, timeout=10, context=context)
    connection.request("GET", "/~alice")
    response = connection.getresponse()
    assert response.status == 200
    assert "Writing the finger daemon" in response.read().decode()
    assert response.getheader("Content-Security-Policy")
    proxy = xmlrpc.client.ServerProxy(f"https://127.0.0.1:{https_port}/RPC2", context=context)
    assert proxy.getUser("bob") == "Out to lunch"
    assert get(web_port, "/~bob")[0].status == 200


def test_https_handshake_stall_holds_no_one_up(start_daemon, ports, certificate):
    cert, key = certificate
    https_port = ports.take()
    start_daemon(STATUS, https_port=https_port, tls_cert=str(cert), tls_key=str(key))
    stalled = socket.create_connection(("127.0.0.1", https_port))
    plain = socket.create_connection(("127.0.0.1", https_port))
    try:
        plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
        context = ssl.create_default_context(cafile=str(cert))
        connection = http.client.HTTPSConnection("127.0.0.1", https_port, timeout=5, context=context)
        connection.request("GET", "/api/users/alice")
        assert connection.getresponse().status == 200
    finally:
        stalled.close()
        plain.close()


@pytest.mark.parametrize("which", ["--tls-key", "--tls-cert"])
def test_missing_tls_file_exits_2(tmp_path, certificate, which):
    cert, key = certificate
    files = {"--tls-cert": str(cert), "--tls-key": str(key), which: str(tmp_path / "absent.pem")}
    result = run_fingerd(
        "--status-file", str(tmp_path / "status"), "--https-port", "8443", *sum(([k, v] for k, v in files.items()), [])
    )
    assert result.returncode == 2
    assert which in result.stderr.splitlines()[-1]


def test_bad_tls_key_exits_2(tmp_path, certificate):
    cert, _ = certificate
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    result = run_fingerd(
        "--status-file", str(tmp_path / "status"), "--https-port", "8443", "--tls-cert", str(cert), "--tls-key", str(bad)
    )
    assert result.returncode == 2
    assert "--tls-key" in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_https_without_a_key_exits_2(tmp_path):
    result = run_fingerd("--status-file", str(tmp_path / "status"), "--https-port", "8443")
    assert result.returncode == 2
    assert "--https-port" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("length", ["\u00b2", "1" * 5000, "-1", "0x10", ""])
def test_bad_content_length_is_411(web, length):
    with socket.create_connection(("127.0.0.1", web.web_port), timeout=10) as sock:
        sock.sendall(f"POST /RPC2 HTTP/1.0\r\nContent-Length: {length}\r\n\r\n".encode())
        assert read_all(sock).startswith(b"HTTP/1.0 411")
    assert "Traceback" not in web.log()


def test_a_trickling_client_is_cut_off(start_daemon, ports):
    port = ports.take()
    daemon = start_daemon(STATUS, web_port=port, timeout=1)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.settimeout(0.5)
        started = time.monotonic()
        for byte in b"GET / HTTP/1.0\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(4096) == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        elapsed = time.monotonic() - started
    assert elapsed < 4, "the connection outlived twice the timeout"
    assert daemon.query(b"alice\r\n") == b"Writing the finger daemon\r\n"


def test_sigterm_with_idle_web_and_https_clients(start_daemon, ports, certificate):
    cert, key = certificate
    web_port, https_port = ports.take(), ports.take()
    daemon = start_daemon(STATUS, web_port=web_port, https_port=https_port, tls_cert=str(cert), tls_key=str(key))
    held = [socket.create_connection(("127.0.0.1", port)) for port in (web_port, web_port, https_port, https_port)]
    context = ssl.create_default_context(cafile=str(cert))
    handshaken = context.wrap_socket(socket.create_connection(("127.0.0.1", https_port)), server_hostname="127.0.0.1")
    handshaken.sendall(b"GET / HTTP/1.0\r\n")
    time.sleep(0.3)
    started = time.monotonic()
    try:
        assert daemon.stop() == 0
        assert time.monotonic() - started < 5
    finally:
        for sock in [*held, handshaken]:
            sock.close()


def test_a_stop_never_sends_an_https_reply_in_clear(start_daemon, ports, certificate, tmp_path):
    """At the stop's cut-off a request waiting on a slow source is failed and its socket's read side shut:
    the 503 that follows must still be TLS."""
    cert, key = certificate
    https_port = ports.take()
    program = tmp_path / "slow"
    program.write_text("#!/bin/sh\nsleep 30\n")
    program.chmod(0o755)
    daemon = start_daemon(
        STATUS, https_port=https_port, tls_cert=str(cert), tls_key=str(key), timeout=20,
        source="[file, command]", command=str(program), command_timeout=15,
    )
    context = ssl.create_default_context(cafile=str(cert))
    connection = http.client.HTTPSConnection("127.0.0.1", https_port, timeout=10, context=context)
    connection.request("GET", "/api/users/sleeper")
    time.sleep(0.5)
    daemon.signal(signal.SIGTERM)
    response = connection.getresponse()
    assert response.status == 503
    assert json.load(response) == {"error": "Lookup failed, try again later"}
    assert daemon.process.wait(10) == 0
