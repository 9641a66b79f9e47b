"""init/fingerd.service: systemd accepts it, its hardening holds, and the daemon runs as it would run it.

There is no systemd running in the test machines, so the unit is checked
with ``systemd-analyze`` (from the ``systemd`` package, which tests/run
installs) and the daemon is started the way the unit starts it: as the
unprivileged user from the start, with only CAP_NET_BIND_SERVICE, as an
ambient capability, and no new privileges.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from conftest import ENTRY, ROOT, Daemon, finger, thread_identities

UNIT = ROOT / "init" / "fingerd.service"
PROGRAM = "/opt/fingerd/bin/fingerd"


def analyze(*args: str) -> subprocess.CompletedProcess:
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: tests/run installs the systemd package"
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def unit_copy(directory: Path, text: str) -> Path:
    """The unit with its program path pointing at this checkout (verify checks it is executable)."""
    program = directory / "fingerd"
    program.write_text(f"#!/bin/sh\nexec {sys.executable} {ENTRY} \"$@\"\n")
    program.chmod(0o755)
    unit = directory / "fingerd.service"
    unit.write_text(text.replace(PROGRAM, str(program)))
    return unit


def test_the_unit_names_the_installed_program():
    assert re.search(rf"^ExecStart={re.escape(PROGRAM)} -c /etc/fingerd.conf ", UNIT.read_text(), re.MULTILINE)


def test_systemd_analyze_verify_is_silent(tmp_path):
    result = analyze("verify", str(unit_copy(tmp_path, UNIT.read_text())))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_would_report_a_mistake(tmp_path):
    """The check above can fail: a misspelt key is reported."""
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    result = analyze("verify", str(unit_copy(tmp_path, broken)))
    assert "ProtectSytem" in result.stdout + result.stderr


def test_the_settings_the_daemon_depends_on():
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    assert settings["Type"] == ["notify"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["User"] == ["fingerd"] and settings["Group"] == ["fingerd"]
    assert "--user fingerd --group fingerd" in settings["ExecStart"][0]
    assert settings["AmbientCapabilities"] == settings["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["ProtectSystem"] == ["strict"] and settings["PrivateTmp"] == ["yes"]
    assert settings["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert settings["StateDirectory"] == ["fingerd"], "/var/lib/fingerd, the default status file's directory"
    assert settings["RuntimeDirectory"] == ["fingerd"], "/run/fingerd, the default setter socket's directory"


def test_the_exposure_rating_is_ok(tmp_path):
    result = analyze("security", "--offline=yes", str(unit_copy(tmp_path, UNIT.read_text())))
    match = re.search(r"Overall exposure level for fingerd\.service: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


def free_low_port() -> int:
    for port in range(700, 1000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 1024")


UNIT_IDENTITY = """
set -e
mount --bind "$PYTHON_PREFIX" "$VIEW"
export PYTHONPATH="$VIEW/$PURELIB" LD_LIBRARY_PATH="$VIEW/lib"
exec setpriv --reuid=nobody --regid=nogroup --clear-groups --no-new-privs \\
    --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service \\
    --bounding-set=-all,+net_bind_service "$VIEW/$PYTHON" "$@"
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="setting up the unit's identity needs root")
@pytest.mark.skipif(not (shutil.which("setpriv") and shutil.which("unshare")), reason="needs util-linux")
def test_runs_unprivileged_with_only_the_bind_capability():
    """What User=, AmbientCapabilities= and NoNewPrivileges= give the daemon: enough to serve a port below 1024.

    This interpreter may live where nobody cannot reach it (/root/.pyenv), so
    a private mount namespace shows it to the daemon at a path it can reach.
    """
    with tempfile.TemporaryDirectory(prefix="fingerd-unit-") as name:
        state = Path(name)
        state.chmod(0o755)
        os.chown(state, 65534, 65534)
        (state / "status").write_text("alice: under the unit\n")
        (state / "python").mkdir()
        wrapper = state / "unit-identity.sh"
        wrapper.write_text(UNIT_IDENTITY)
        prefix = Path(sys.prefix)
        env = {
            "PYTHON_PREFIX": str(prefix),
            "VIEW": str(state / "python"),
            "PYTHON": str(Path(sys.executable).relative_to(prefix)),
            "PURELIB": str(Path(sysconfig.get_paths()["purelib"]).relative_to(prefix)),
            "JOURNAL_STREAM": "8:1",
        }
        port = free_low_port()
        daemon = Daemon(
            state, port,
            {"user": "nobody", "group": "nogroup", "setter-socket": str(state / "setter.sock")},
            env=env, program=["unshare", "--mount", "--propagation", "private", "sh", str(wrapper), str(ENTRY)],
        )
        try:
            daemon.start()
            assert finger(port, b"alice\r\n") == b"under the unit\r\n"
            identities = thread_identities(daemon.process.pid)
            assert all(identity["Uid"] == ["65534"] * 4 and identity["Groups"] == [] for identity in identities)
            log = daemon.log()
            assert "not started as root; running as uid 65534" in log
            assert "WARNING" not in log and "CRITICAL" not in log, log
            assert daemon.stop() == 0
        finally:
            daemon.close()


SOCKET = ROOT / "init" / "fingerd.socket"
DROP_IN = ROOT / "init" / "fingerd-socket.conf"


def socket_activated(directory: Path, drop_in: str) -> Path:
    """The service, the socket unit and the drop-in laid out as in /etc/systemd/system; the service's path."""
    unit = unit_copy(directory, UNIT.read_text())
    (directory / "fingerd.socket").write_text(SOCKET.read_text())
    (directory / "fingerd.service.d").mkdir()
    (directory / "fingerd.service.d" / "socket.conf").write_text(drop_in)
    return unit


def analyze_in(directory: Path, *args: str) -> subprocess.CompletedProcess:
    """systemd-analyze looking for units (and their drop-ins) in ``directory`` first."""
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, SYSTEMD_UNIT_PATH=f"{directory}:"),
    )


def test_the_socket_unit_names_the_finger_socket_as_the_daemon_expects():
    assert re.search(r"^FileDescriptorName=finger$", SOCKET.read_text(), re.MULTILINE)
    assert re.search(r"^ListenStream=79$", SOCKET.read_text(), re.MULTILINE)
    assert re.search(r"^Service=fingerd.service$", SOCKET.read_text(), re.MULTILINE)


def test_the_socket_unit_and_the_drop_in_verify_silently(tmp_path):
    unit = socket_activated(tmp_path, DROP_IN.read_text())
    result = analyze_in(tmp_path, "verify", str(tmp_path / "fingerd.socket"), str(unit))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""
    (tmp_path / "misspelt").mkdir()
    misspelt = socket_activated(tmp_path / "misspelt", DROP_IN.read_text().replace("Ambient", "Ambeint"))
    reported = analyze_in(tmp_path / "misspelt", "verify", str(misspelt))
    assert "Ambeint" in reported.stdout + reported.stderr, "the drop-in was not read"


def test_with_the_drop_in_the_service_gets_no_capability(tmp_path):
    """systemd's own reading of the unit: no ambient capability once the socket unit binds port 79."""
    unit = socket_activated(tmp_path, DROP_IN.read_text())
    rating = analyze_in(tmp_path, "security", "--offline=true", str(unit)).stdout
    assert re.search(r"^✓ AmbientCapabilities=\s", rating, re.MULTILINE), rating
    (tmp_path / "plain").mkdir()
    plain = analyze("security", "--offline=true", str(unit_copy(tmp_path / "plain", UNIT.read_text()))).stdout
    assert re.search(r"^✗ AmbientCapabilities=\s", plain, re.MULTILINE), "the check cannot tell the two apart"
