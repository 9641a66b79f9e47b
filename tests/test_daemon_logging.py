"""Where the daemon logs, what it says at start-up, and what it leaves out.

stderr by default (no timestamps under systemd's journal), a log file that
follows logrotate on SIGHUP even after the privilege drop, syslog through
``/dev/log``, the effective configuration at start-up, and
``--no-log-peers`` for operators who must not keep client addresses.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ENTRY, ROOT

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def test_stderr_lines_carry_timestamps(start_daemon):
    daemon = start_daemon("alice: hi\n")
    daemon.query(b"alice\r\n")
    log = daemon.wait_for_log('"alice" found')
    lines = log.splitlines()
    assert lines and all(STAMP.match(line) for line in lines), log


def test_no_timestamps_for_the_journal(start_daemon):
    daemon = start_daemon("alice: hi\n", env={"JOURNAL_STREAM": "8:12345"})
    daemon.query(b"alice\r\n")
    log = daemon.wait_for_log('"alice" found')
    lines = log.splitlines()
    assert 'INFO fingerd.access: 127.0.0.1 "alice" found' in lines
    assert not any(STAMP.match(line) for line in lines), log
    assert all(line.split(" ", 1)[0] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") for line in lines), log


def test_the_effective_configuration_is_logged_with_its_sources(start_daemon):
    daemon = start_daemon("alice: hi\n", env={"FINGERD_MAX_CONNECTIONS": "9"}, args=("--timeout", "4"))
    log = daemon.log()
    origins = next(line for line in log.splitlines() if "INFO fingerd: configuration: " in line)
    assert "command line: -c " in origins and "--timeout 4" in origins
    assert "environment: FINGERD_MAX_CONNECTIONS" in origins
    assert f"config file {daemon.config}: " in origins and "finger-port" in origins
    assert origins.endswith("defaults for the rest")
    effective = next(line for line in log.splitlines() if "INFO fingerd: effective configuration: " in line)
    expected = (f"finger-port={daemon.port}", "max-connections=9", "timeout=4.0", "log-peers=true", "bind=127.0.0.1")
    for setting in expected:
        assert f" {setting} " in effective + " ", effective


def web_get(port: int, path: str) -> None:
    urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read()


@pytest.mark.parametrize(
    "how",
    [
        {"args": ("--no-log-peers",)},
        {"options": {"log-peers": "false"}},
        {"env": {"FINGERD_LOG_PEERS": "false"}},
    ],
    ids=["command-line", "config-file", "environment"],
)
def test_no_log_peers_leaves_addresses_out(start_daemon, ports, how):
    web_port = ports.take()
    daemon = start_daemon(
        "alice: hi\n", web_port=web_port, args=how.get("args", ()), env=how.get("env"), **how.get("options", {})
    )
    daemon.query(b"alice\r\n")
    web_get(web_port, "/")
    daemon.wait_for_log('"alice" found')
    log = daemon.wait_for_log('"GET / HTTP/1.1" 200')
    assert 'INFO fingerd.access: - "alice" found' in log
    assert 'INFO fingerd.web: - "GET / HTTP/1.1" 200' in log
    assert daemon.stop() == 0
    own_address = ("fingerd: ready: ", "fingerd: effective configuration: ")
    about_clients = [line for line in daemon.log().splitlines() if not any(text in line for text in own_address)]
    assert not [line for line in about_clients if "127.0.0.1" in line]


def test_peers_are_logged_by_default(start_daemon, ports):
    web_port = ports.take()
    daemon = start_daemon("alice: hi\n", web_port=web_port)
    daemon.query(b"alice\r\n")
    web_get(web_port, "/")
    log = daemon.wait_for_log('"alice" found')
    assert 'INFO fingerd.access: 127.0.0.1 "alice" found' in log
    assert 'INFO fingerd.web: 127.0.0.1 "GET / HTTP/1.1" 200' in log


@as_root
def test_logrotate_rename_then_sighup_after_the_drop(start_daemon, nobody_dir):
    """The daemon's user reopens the path in its own directory, as the logrotate recipe in docs/install.md does."""
    (nobody_dir / "status").write_text("alice: hi\n")
    log_file = nobody_dir / "fingerd.log"
    daemon = start_daemon(
        None, workdir=nobody_dir, user="nobody", group="nogroup",
        status_file=str(nobody_dir / "status"), log_file=str(log_file),
    )
    daemon.query(b"alice\r\n")
    wait_for_text(log_file, '"alice" found')
    rotated = nobody_dir / "fingerd.log.1"
    os.rename(log_file, rotated)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for("READY=1", timeout=5)
    daemon.query(b"bob\r\n")
    wait_for_text(log_file, '"bob" no-such-user')
    assert log_file.stat().st_uid == 65534, "created by the daemon's user, not root"
    assert '"alice" found' in rotated.read_text()
    assert '"alice" found' not in log_file.read_text()
    assert "reopening the log" in rotated.read_text()
    assert daemon.stop() == 0
    assert "stopped" in log_file.read_text()


def wait_for_text(path: Path, text: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} not in {path}"
        time.sleep(0.05)


SYSLOG_NAMESPACE = """
set -e
mount --bind /dev "$WORK/realdev"
mount -t tmpfs tmpfs /dev
for node in null zero random urandom; do
    touch "/dev/$node"
    mount --bind "$WORK/realdev/$node" "/dev/$node"
done
touch /dev/log
mount --bind "$WORK/log.sock" /dev/log
exec "$@"
"""


@as_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_syslog_gets_every_line_including_access_lines(ports, tmp_path):
    """A private mount namespace gives the daemon a /dev/log the test owns."""
    (tmp_path / "realdev").mkdir()
    (tmp_path / "status").write_text("alice: hi\n")
    wrapper = tmp_path / "namespace.sh"
    wrapper.write_text(SYSLOG_NAMESPACE)
    port = ports.take()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(str(tmp_path / "log.sock"))
        syslog.settimeout(10)
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", str(wrapper),
             sys.executable, str(ENTRY), "--syslog", "--bind", "127.0.0.1", "--finger-port", str(port),
             "--web-port", "0", "--setter-socket", "", "--user", "root", "--status-file", str(tmp_path / "status")],
            cwd=ROOT, env=dict(os.environ, WORK=str(tmp_path)), stderr=subprocess.PIPE, text=True,
        )
        try:
            messages = receive_until(syslog, "fingerd: ready: ")
            assert all(re.match(r"<\d+>fingerd\[\d+\]: ", message) for message in messages), messages
            assert any("<30>" in message and "effective configuration" in message for message in messages)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"alice\r\n")
                assert sock.recv(100) == b"hi\r\n"
            access = receive_until(syslog, '"alice" found')[-1]
            assert re.fullmatch(r'<30>fingerd\[\d+\]: INFO fingerd\.access: 127\.0\.0\.1 "alice" found\x00?', access)
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0
            assert process.stderr.read() == "", "nothing on stderr with --syslog"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def receive_until(sock: socket.socket, text: str) -> list[str]:
    messages = []
    while not messages or text not in messages[-1]:
        messages.append(sock.recv(65536).decode())
    return messages
