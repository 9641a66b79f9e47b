"""init/fingerd, run for real as root with start-stop-daemon and the LSB functions.

Everything lives in a temporary directory: ``FINGERD_DEFAULTS`` points the
script at a defaults file naming a temporary configuration, pidfile and
output file, and the daemon listens on a free loopback port.  Nothing is
written to /etc, /run (start-stop-daemon's own notify directory excepted,
which it removes; the fixture checks) or /var.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ENTRY, ROOT, finger, thread_identities

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the init script starts the daemon as root")

SCRIPT = ROOT / "init" / "fingerd"
NOBODY = {"Uid": ["65534"] * 4, "Gid": ["65534"] * 4, "Groups": []}
# Far longer than any test may take: a start that waited for it would hit the subprocess timeout.
START_TIMEOUT = 300


@dataclass
class Service:
    """One installation of the init script in a temporary directory."""

    base: Path
    port: int

    @property
    def config(self) -> Path:
        return self.base / "fingerd.conf"

    @property
    def pidfile(self) -> Path:
        return self.base / "run" / "fingerd.pid"

    @property
    def output(self) -> Path:
        return self.base / "fingerd.out"

    @property
    def status_file(self) -> Path:
        return self.base / "state" / "status"

    def write_config(self, **extra: object) -> None:
        settings = {
            "bind": "127.0.0.1",
            "finger-port": self.port,
            "web-port": 0,
            "setter-socket": self.base / "state" / "setter.sock",
            "status-file": self.status_file,
            "user": "nobody",
            "group": "nogroup",
            **extra,
        }
        self.config.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))

    def run(self, action: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["sh", str(SCRIPT), action],
            env=dict(os.environ, FINGERD_DEFAULTS=str(self.base / "defaults")),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def pid(self) -> int:
        return int(self.pidfile.read_text())

    def wait_for_output(self, text: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (output := self.output.read_text()):
            assert time.monotonic() < deadline, f"{text!r} not in the output: {output[-2000:]}"
            time.sleep(0.05)
        return output


def notify_directories() -> set[str]:
    return {name for name in os.listdir("/run") if name.startswith(".s-s-d-notify")}


@pytest.fixture
def service(ports):
    before = notify_directories()
    with tempfile.TemporaryDirectory(prefix="fingerd-init-") as name:
        base = Path(name)
        base.chmod(0o755)
        state = base / "state"
        state.mkdir()
        os.chown(state, 65534, 65534)
        (state / "status").write_text("alice: at the init script\n")
        service = Service(base, ports.take())
        service.write_config()
        (base / "defaults").write_text(
            f"DAEMON={sys.executable}\nDAEMON_ARGS={ENTRY}\nCONFIG={service.config}\n"
            f"PIDFILE={service.pidfile}\nOUTPUT={service.output}\nSTART_TIMEOUT={START_TIMEOUT}\n"
        )
        try:
            yield service
        finally:
            if service.pidfile.exists():
                service.run("stop")
            if service.pidfile.exists():
                os.kill(service.pid(), signal.SIGKILL)
    assert notify_directories() <= before, "start-stop-daemon removed its notify directory"


def test_start_status_reload_stop_status(service):
    started = service.run("start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "Starting finger server: fingerd" in started.stdout
    assert finger(service.port, b"alice\r\n") == b"at the init script\r\n", "answering once start returns"

    pid = service.pid()
    assert service.pidfile.stat().st_uid == 65534
    assert service.pidfile.parent.stat().st_uid == 65534, "the script made the pidfile's directory for nobody"
    identities = thread_identities(pid)
    assert len(identities) >= 4
    assert all(identity == NOBODY for identity in identities), identities

    status = service.run("status")
    assert (status.returncode, status.stdout.strip()) == (0, "fingerd is running.")

    assert service.run("reload").returncode == 0
    service.wait_for_output("SIGHUP: reopening the log")
    assert service.pid() == pid

    stopped = service.run("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not Path(f"/proc/{pid}").exists()
    assert not service.pidfile.exists()
    assert "INFO fingerd: stopped" in service.output.read_text()

    status = service.run("status")
    assert status.returncode == 3, status.stdout
    assert service.run("stop").returncode == 0, "stopping a stopped service succeeds"
    assert service.run("reload").returncode == 7, "LSB: program is not running"


def test_start_twice_keeps_the_running_daemon(service):
    assert service.run("start").returncode == 0
    pid = service.pid()
    again = service.run("start")
    assert again.returncode == 0
    assert service.pid() == pid


def test_restart_and_force_reload_start_a_new_process(service):
    assert service.run("start").returncode == 0
    first = service.pid()
    assert service.run("restart").returncode == 0
    second = service.pid()
    assert second != first and not Path(f"/proc/{first}").exists()
    service.write_config(**{"list-users": "false"})
    assert service.run("force-reload").returncode == 0, "it rereads the configuration: a restart"
    assert service.pid() != second
    assert finger(service.port, b"\r\n") == b"Finger online user list denied\r\n"


def test_a_broken_config_fails_fast_with_the_daemon_error(service):
    service.write_config(**{"timeout": "soon"})
    result = service.run("start")
    assert result.returncode == 6, "LSB: program is not configured"
    assert f"fingerd: {service.config}:" in result.stderr and "timeout: invalid value 'soon'" in result.stderr
    assert "failed" in result.stdout
    assert "Traceback" not in result.stderr
    assert not service.pidfile.exists()


def test_a_port_in_use_fails_fast_with_the_daemon_error(service):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", service.port))
        holder.listen()
        result = service.run("start")
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{service.port}: Address already in use" in result.stderr
    assert "failed" in result.stdout
    assert service.run("status").returncode == 3
    assert not service.pidfile.exists()


def test_a_broken_config_does_not_stop_a_running_daemon_on_restart(service):
    assert service.run("start").returncode == 0
    pid = service.pid()
    service.write_config(**{"user": "no-such-user-here"})
    result = service.run("restart")
    assert result.returncode == 6
    assert f"fingerd: {service.config}:" in result.stderr and "user: no such user: 'no-such-user-here'" in result.stderr
    assert service.pid() == pid and service.run("status").returncode == 0
    assert service.run("stop").returncode == 0, "stopping needs no valid configuration"
    assert not Path(f"/proc/{pid}").exists()


def test_a_missing_program_is_lsb_status_5(service):
    with (service.base / "defaults").open("a") as defaults:
        defaults.write(f"DAEMON={service.base}/not-installed\n")
    result = service.run("start")
    assert result.returncode == 5
    assert "not-installed is not installed" in result.stdout + result.stderr


def test_start_stop_daemon_has_what_the_script_uses():
    usage = subprocess.run(["start-stop-daemon", "--help"], capture_output=True, text=True).stdout
    for option in ("--notify-await", "--notify-timeout", "--output", "--remove-pidfile"):
        assert option in usage
