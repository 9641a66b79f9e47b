"""``fingerd --inetd`` under a real xinetd: one process per client, the connection on standard input.

The tests start xinetd (the Debian package; tests/run installs it) in the
foreground on a loopback port, with a service entry like
``init/fingerd.xinetd`` pointing at this checkout, and ask it over raw
sockets and with the real Debian ``finger`` client.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ENTRY, ROOT, finger

XINETD = "/usr/sbin/xinetd"
STATUS = "alice: Writing the finger daemon\nbob: Out to lunch\n"


@pytest.fixture
def open_dir(shared_dir):
    """The status file where nobody can read it."""
    (shared_dir / "status").write_text(STATUS)
    return shared_dir


@pytest.fixture
def xinetd(open_dir, ports):
    """xinetd serving fingerd --inetd on a loopback port; yields (port, access log path)."""
    assert os.path.exists(XINETD), "xinetd is required: apt-get install xinetd (the test command installs it)"
    port = ports.take()
    log = open_dir / "fingerd.log"
    log.touch()
    identity = ["--user", "nobody", "--group", "nogroup"] if os.geteuid() == 0 else []
    if identity:
        os.chown(log, 65534, 65534)
    arguments = [str(ENTRY), "--inetd", "--status-file", str(open_dir / "status"), "--log-file", str(log), *identity]
    config = open_dir / "xinetd.conf"
    config.write_text(
        "defaults\n{\n\tlog_type = FILE " + str(open_dir / "xinetd.log") + "\n}\n"
        "service fingerd-test\n{\n"
        "\ttype = UNLISTED\n\tsocket_type = stream\n\tprotocol = tcp\n\twait = no\n"
        f"\tport = {port}\n\tbind = 127.0.0.1\n\tuser = {pwd.getpwuid(os.getuid()).pw_name}\n"
        f"\tserver = {sys.executable}\n\tserver_args = {' '.join(arguments)}\n"
        "\tinstances = 20\n}\n"
    )
    process = subprocess.Popen(
        [XINETD, "-dontfork", "-f", str(config), "-pidfile", str(open_dir / "xinetd.pid")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            assert process.poll() is None, process.communicate()[1].decode()
            assert time.monotonic() < deadline, "xinetd never listened"
            time.sleep(0.05)
        yield port, log
    finally:
        process.terminate()
        process.wait(10)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_for_log(log: Path, text: str, limit: float = 10) -> str:
    deadline = time.monotonic() + limit
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} not in the log: {log.read_text()}"
        time.sleep(0.05)
    return log.read_text()


def test_xinetd_runs_one_fingerd_per_client(xinetd):
    port, log = xinetd
    assert finger(port, b"alice\r\n") == b"Writing the finger daemon\r\n"
    assert finger(port, b"nobody-here\r\n") == b"No such user\r\n"
    listing = finger(port, b"\r\n").decode()
    assert listing.splitlines()[0].split() == ["alice", "Writing", "the", "finger", "daemon"]
    text = wait_for_log(log, '127.0.0.1 "" list')
    assert '127.0.0.1 "alice" found' in text and '127.0.0.1 "nobody-here" no-such-user' in text


def test_the_same_output_safety_and_limits_as_the_daemon(xinetd):
    """A hostile query is answered like the daemon answers it, and a silent client is timed out."""
    port, _ = xinetd
    assert finger(port, b"../../etc/passwd\r\n") == b"No such user\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        started = time.monotonic()
        sock.settimeout(20)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply == b"Timed out waiting for the query\r\n"
    assert 9 < time.monotonic() - started < 15, "--timeout (10 s) counts from the connect"


def test_clients_at_once_each_get_their_answer(xinetd):
    port, _ = xinetd
    names = [b"alice", b"bob"] * 5
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in names]
    for sock, name in zip(sockets, names):
        sock.sendall(name + b"\r\n")
    replies = []
    for sock in sockets:
        with sock:
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
            replies.append(reply)
    assert replies == [b"Writing the finger daemon\r\n", b"Out to lunch\r\n"] * 5


def test_the_debian_finger_client_through_xinetd(xinetd, tmp_path):
    """The real client has no port option: a private /etc/services maps finger to the test port."""
    port, _ = xinetd
    binary = shutil.which("finger")
    assert binary, "the Debian finger client is required: apt-get install finger (the test command installs it)"
    services = tmp_path / "services"
    kept = [line for line in Path("/etc/services").read_text().splitlines() if not line.startswith("finger")]
    services.write_text("\n".join(kept + [f"finger\t\t{port}/tcp"]) + "\n")
    script = f'mount --bind "{services}" /etc/services && exec "{binary}" "$@"'
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "finger", "alice@127.0.0.1"], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0, result.stderr
    assert "Writing the finger daemon" in result.stdout


def test_inetd_mode_without_a_socket_says_so():
    result = subprocess.run(
        [sys.executable, str(ENTRY), "--inetd", "--status-file", "/nonexistent"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "fingerd: --inetd: standard input is not a socket (run it from inetd, xinetd or a socket unit)\n"
    )


def test_inetd_mode_on_a_local_socket_says_it_wants_tcp():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        result = subprocess.run(
            [sys.executable, str(ENTRY), "--inetd", "--status-file", "/nonexistent"],
            stdin=theirs, capture_output=True, text=True, timeout=20,
        )
    assert result.returncode == 2
    assert result.stderr == "fingerd: --inetd: standard input is not a TCP connection\n"


def as_inetd_would(*arguments: str, query: bytes = b"alice\r\n") -> tuple[int, bytes]:
    """Run ``fingerd --inetd ARGUMENTS`` with a real TCP connection as standard input, output and error, as inetd does."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        connection, _ = listener.accept()
    with client, connection:
        process = subprocess.Popen(
            [sys.executable, str(ENTRY), "--inetd", *arguments], stdin=connection, stdout=connection, stderr=connection
        )
        connection.close()
        client.settimeout(20)
        client.sendall(query)
        received = b""
        while chunk := client.recv(4096):
            received += chunk
    return process.wait(20), received


def test_a_configuration_error_never_reaches_the_client(open_dir):
    """Standard error is the client's socket under inetd: the complaint goes to syslog, the client gets nothing."""
    code, received = as_inetd_would("--status-file", str(open_dir / "status"), "--timeout", "never")
    assert code == 2
    assert received == b""
    config = open_dir / "bad.conf"
    config.write_text("max-conections = 3\n")
    code, received = as_inetd_would("-c", str(config), "--status-file", str(open_dir / "status"))
    assert (code, received) == (2, b"")


def test_a_tcp_connection_on_all_three_descriptors_is_answered(open_dir):
    identity = ("--user", "nobody", "--group", "nogroup") if os.geteuid() == 0 else ()
    code, received = as_inetd_would("--status-file", str(open_dir / "status"), *identity)
    assert (code, received) == (0, b"Writing the finger daemon\r\n")
