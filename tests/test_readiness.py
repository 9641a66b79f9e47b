"""The readiness protocol, seen from a service manager's notify socket.

The socket is a datagram socket the test owns, as systemd's or
``start-stop-daemon --notify-await``'s would be.  The daemon must say
READY=1 only when it answers, RELOADING=1 then READY=1 around SIGHUP,
STOPPING=1 on SIGTERM, and ERRNO=<n> when start-up fails, so that a waiting
``start-stop-daemon`` gives up at once instead of after its timeout.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ENTRY, ROOT


def test_ready_reloading_stopping(start_daemon):
    daemon = start_daemon("alice: hi\n")
    assert daemon.query(b"alice\r\n") == b"hi\r\n", "READY=1 came when it answers"
    daemon.signal(signal.SIGHUP)
    seen = daemon.wait_for("READY=1", timeout=5)
    assert seen.index("RELOADING=1") < seen.index("READY=1")
    daemon.signal(signal.SIGTERM)
    daemon.wait_for("STOPPING=1", timeout=5)
    assert daemon.process.wait(5) == 0


class NotifySocket:
    """A service manager's socket at ``path``; `states` collects what arrived."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def states(self, until: str, timeout: float = 15.0) -> list[str]:
        seen: list[str] = []
        self.sock.settimeout(timeout)
        while until not in seen:
            seen.extend(self.sock.recv(4096).decode().split("\n"))
        return seen

    def close(self) -> None:
        self.sock.close()


def run_with_notify(notify: NotifySocket, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path))
    return subprocess.run(
        [sys.executable, str(ENTRY), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=20
    )


def test_a_port_in_use_is_reported_as_errno(ports, tmp_path):
    notify = NotifySocket(tmp_path / "notify")
    port = ports.take()
    try:
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", port))
            holder.listen()
            result = run_with_notify(
                notify, "--bind", "127.0.0.1", "--finger-port", str(port), "--web-port", "0",
                "--setter-socket", "", "--user", "root", "--status-file", str(tmp_path / "status"),
            )
        assert result.returncode == 1
        assert f"ERRNO={errno.EADDRINUSE}" in notify.states(until=f"ERRNO={errno.EADDRINUSE}", timeout=1)
    finally:
        notify.close()


def test_a_bad_option_is_reported_as_errno(tmp_path):
    notify = NotifySocket(tmp_path / "notify")
    try:
        result = run_with_notify(notify, "--finger-port", "seventy-nine")
        assert result.returncode == 2
        assert "--finger-port" in result.stderr.splitlines()[-1]
        assert f"ERRNO={errno.EINVAL}" in notify.states(until=f"ERRNO={errno.EINVAL}", timeout=1)
    finally:
        notify.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_a_dropped_daemon_still_reaches_a_root_only_socket(ports, tmp_path):
    """start-stop-daemon's socket lives in a directory only root may enter."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    notify = NotifySocket(private / "notify")
    port = ports.take()
    with tempfile.TemporaryDirectory(prefix="fingerd-notify-") as name:
        shared = Path(name)
        shared.chmod(0o755)
        (shared / "status").write_text("alice: hi\n")
        (shared / "status").chmod(0o644)
        env = dict(os.environ, NOTIFY_SOCKET=str(private / "notify"))
        process = subprocess.Popen(
            [sys.executable, str(ENTRY), "--bind", "127.0.0.1", "--finger-port", str(port), "--web-port", "0",
             "--setter-socket", "", "--user", "nobody", "--group", "nogroup", "--status-file", str(shared / "status")],
            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert "READY=1" in notify.states(until="READY=1")
            process.send_signal(signal.SIGHUP)
            assert notify.states(until="READY=1", timeout=5)[0] == "RELOADING=1"
            process.send_signal(signal.SIGTERM)
            assert "STOPPING=1" in notify.states(until="STOPPING=1", timeout=5)
            assert process.wait(5) == 0
            assert "cannot notify" not in process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            notify.close()
