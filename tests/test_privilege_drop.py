"""Started as root, the daemon binds, then runs as --user/--group.

The daemon runs under `audit_imports.py`, which reports any module imported
after the drop: in production the interpreter's files may be unreadable by
then.  The status file lives in a directory the unprivileged user can read.
"""

from __future__ import annotations

import http.server
import os
import pwd
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import xmlrpc.client
from pathlib import Path

import pytest

from conftest import make_certificate, thread_identities

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")

AUDITED = (sys.executable, str(Path(__file__).resolve().parent / "audit_imports.py"))


@pytest.fixture
def dropped(start_daemon, nobody_dir, ports, tmp_path):
    status = nobody_dir / "status"
    status.write_text("alice: before\n")
    status.chmod(0o644)
    cert, key = make_certificate(tmp_path)
    web_port, https_port = ports.take(), ports.take()
    daemon = start_daemon(
        None,
        program=AUDITED,
        workdir=nobody_dir,
        user="nobody",
        group="nogroup",
        status_file=str(status),
        pidfile=str(nobody_dir / "fingerd.pid"),
        log_file=str(nobody_dir / "fingerd.log"),
        web_port=web_port,
        https_port=https_port,
        tls_cert=str(cert),
        tls_key=str(key),
        setter_socket=str(nobody_dir / "setter.sock"),
    )
    daemon.web_port, daemon.https_port = web_port, https_port
    return daemon


def use_the_web_view(daemon) -> None:
    """Every kind of web request, so any module they need late would show."""
    plain = f"http://127.0.0.1:{daemon.web_port}"
    for path in ("/", "/~alice", "/nobody-here", "/api/users", "/api/users/alice", "/static/live.js"):
        try:
            urllib.request.urlopen(plain + path, timeout=10).read()
        except urllib.error.HTTPError as error:
            assert error.code == 404
    assert xmlrpc.client.ServerProxy(plain + "/RPC2").getUser("alice")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    secure = f"https://127.0.0.1:{daemon.https_port}"
    assert urllib.request.urlopen(secure + "/~alice", timeout=10, context=context).read()
    assert xmlrpc.client.ServerProxy(secure + "/RPC2", context=context).getUsers()


def test_every_thread_runs_as_nobody_and_nothing_loads_late(dropped, nobody_dir):
    daemon = dropped
    assert daemon.query(b"alice\r\n") == b"before\r\n"
    identities = thread_identities(daemon.process.pid)
    assert len(identities) >= 4, "acceptor, access log, watcher and reloader are running"
    for identity in identities:
        assert identity == {"Uid": ["65534"] * 4, "Gid": ["65534"] * 4, "Groups": []}
    log_file = nobody_dir / "fingerd.log"
    assert "dropped privileges to nobody:nogroup" in daemon.log()

    (nobody_dir / "status").write_text("alice: after\n")
    daemon.wait_for_reply(b"alice\r\n", b"after\r\n")
    os.rename(log_file, nobody_dir / "fingerd.log.1")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for("READY=1", timeout=5)
    for query in (b"\xff\r\n", b"x@y\r\n", b"\r\n", b"A" * 2000):
        assert daemon.query(query)
    use_the_web_view(daemon)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(nobody_dir / "setter.sock"))
        sock.sendall(b"SET 22\nset through the socket\n")
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(4096) == b"OK set status of root\n"
    daemon.wait_for_reply(b"root\r\n", b"set through the socket\r\n")
    assert daemon.stop() == 0
    assert not (nobody_dir / "fingerd.pid").exists()
    assert "stopped" in log_file.read_text()
    assert "IMPORT AFTER DROP" not in daemon.log()
    assert "Traceback" not in daemon.log() + log_file.read_text()


def test_an_unreadable_status_file_is_picked_up_once_readable(dropped, nobody_dir):
    daemon = dropped
    status = nobody_dir / "status"
    status.chmod(0o600)
    status.write_text("alice: secret\n")
    log_file = nobody_dir / "fingerd.log"
    deadline = time.monotonic() + 3
    while "Permission denied; keeping the last table" not in log_file.read_text():
        assert time.monotonic() < deadline, "the unreadable file is reported"
        time.sleep(0.05)
    assert daemon.query(b"alice\r\n") == b"before\r\n"
    status.chmod(0o644)
    daemon.wait_for_reply(b"alice\r\n", b"secret\r\n", limit=1.0)


def test_a_status_file_the_daemon_cannot_replace_is_a_clear_setter_error(dropped, nobody_dir):
    """The setter socket runs as nobody too; a root-owned directory refuses it."""
    daemon = dropped
    socket_path = nobody_dir / "setter.sock"
    os.chown(nobody_dir, 0, 0)
    before = (nobody_dir / "status").read_bytes()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(socket_path))
        sock.sendall(b"SET 10 alice\nnew status")
        sock.shutdown(socket.SHUT_WR)
        reply = sock.recv(4096)
    assert reply.startswith(b"ERROR cannot update the status file: Permission denied")
    assert (nobody_dir / "status").read_bytes() == before
    assert daemon.query(b"alice\r\n") == b"before\r\n"


def test_every_source_works_as_nobody_and_nothing_loads_late(start_daemon, nobody_dir, tmp_path):
    """passwd, command and web (plain and TLS) all answer after the drop, importing nothing new."""
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    secure = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    cert, key = make_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    for server in (upstream, secure):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    account = f"fdtdrop{os.getpid() % 100000}"
    home = nobody_dir / "home"
    subprocess.run(["useradd", "--home-dir", str(home), "--create-home", "--shell", "/bin/sh", account], check=True)
    home.chmod(0o755)
    (home / ".plan").write_text("planned\n")
    os.chown(home / ".plan", pwd.getpwnam(account).pw_uid, -1)
    try:
        daemons = [
            start_daemon(
                "alice: filed\n", workdir=nobody_dir, program=AUDITED, user="nobody", group="nogroup",
                source="[file, passwd, web, command]", passwd_min_uid=1000, command="/bin/echo ran for",
                list_all_accounts="true",
                web_url=f"http://localhost:{upstream.server_address[1]}/{{name}}",
            ),
        ]
        daemon = daemons[0]
        assert daemon.text("alice") == "filed\r\n"
        assert daemon.text(account).startswith(f"Login: {account}")
        assert daemon.text(account).endswith("Plan:\r\nplanned\r\n")
        assert daemon.text("root") == "No such user\r\n"
        assert daemon.text("webuser") == "webuser from the web\r\n"
        assert daemon.text("missing") == "ran for missing\r\n"
        assert account in daemon.text("")
        assert daemon.stop() == 0
        tls_dir = nobody_dir / "tls"
        tls_dir.mkdir()
        tls_dir.chmod(0o755)
        daemon = start_daemon(
            "", workdir=tls_dir, program=AUDITED, user="nobody", group="nogroup", source="[web]",
            web_url=f"https://localhost:{secure.server_address[1]}/{{name}}",
        )
        assert daemon.text("webuser") == "Lookup failed, try again later\r\n"
        assert "SSLError" in daemon.wait_for_log("source web failed for webuser")
        assert daemon.stop() == 0
        for log in (daemons[0].log(), daemon.log()):
            assert "IMPORT AFTER DROP" not in log
            assert "Traceback" not in log
    finally:
        subprocess.run(["userdel", account], capture_output=True)
        for server in (upstream, secure):
            server.shutdown()
            server.server_close()


class _Upstream(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        name = self.path.strip("/")
        if name != "webuser":
            self.send_error(404)
            return
        body = f"{name} from the web\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_forwarding_after_the_drop_resolves_and_loads_nothing(start_daemon, nobody_dir, ports):
    """A forward resolves a name, connects, relays and sanitizes, all as nobody, all with modules loaded at start."""
    status = nobody_dir / "status"
    status.write_text("alice: \x1b[1mbefore\n")
    status.chmod(0o644)
    daemon = start_daemon(
        None,
        program=AUDITED,
        workdir=nobody_dir,
        user="nobody",
        group="nogroup",
        status_file=str(status),
        forwarding="true",
        forward_allow="[localhost, 127.0.0.1, no-such-host.invalid]",
    )
    assert daemon.query(f"/W alice@localhost:{daemon.port}\r\n".encode()) == b"Login: alice\r\nPlan:\r\n^[[1mbefore\r\n"
    assert daemon.query(b"alice@no-such-host.invalid\r\n") == b"Forwarding failed: unknown host\r\n"
    assert daemon.query(f"alice@127.0.0.1:{ports.take()}\r\n".encode()) == b"Forwarding failed: connection refused\r\n"
    assert daemon.query(b"alice@example.org\r\n") == b"Forwarding denied: host not allowed\r\n"
    daemon.wait_for_log("forwarded")
    assert thread_identities(daemon.process.pid)[0]["Uid"] == ["65534"] * 4
    assert daemon.stop() == 0
    assert "IMPORT AFTER DROP" not in daemon.log()
    assert "Traceback" not in daemon.log()
