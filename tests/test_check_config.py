"""``--check-config``: parse, validate, print the effective values, exit 0 or 2, bind nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_fingerd

AUDITED = (sys.executable, str(Path(__file__).resolve().parent / "audit_sockets.py"))


def run_audited(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*AUDITED, *args], cwd=ROOT, capture_output=True, text=True, timeout=20, env=dict(os.environ))


def every_listener(ports, tmp_path: Path) -> list[str]:
    return [
        "--bind", "127.0.0.1", "--finger-port", str(ports.take()), "--web-port", str(ports.take()),
        "--setter-port", str(ports.take()), "--setter-socket", str(tmp_path / "setter.sock"),
        "--status-file", str(tmp_path / "status"), "--pidfile", str(tmp_path / "fingerd.pid"),
        "--log-file", str(tmp_path / "fingerd.log"), "--user", "root",
    ]


def test_check_config_binds_and_creates_nothing(ports, tmp_path):
    result = run_audited(*every_listener(ports, tmp_path), "--check-config")
    assert result.returncode == 0, result.stderr
    assert "finger-port = " in result.stdout
    assert "SOCKET" not in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_check_config_fails_with_2_and_binds_nothing(ports, tmp_path):
    result = run_audited(*every_listener(ports, tmp_path), "--timeout", "never", "--check-config")
    assert result.returncode == 2
    assert "--timeout" in result.stderr.splitlines()[-1]
    assert "SOCKET" not in result.stderr


def test_the_audit_sees_a_bind(ports, tmp_path):
    """The same audit on a real start (stopped at once by a port in use) reports the bind."""
    arguments = every_listener(ports, tmp_path)
    port = int(arguments[arguments.index("--finger-port") + 1])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = run_audited(*arguments)
    assert result.returncode == 1
    assert f"SOCKET socket.bind ('127.0.0.1', {port})" in result.stderr


def check_as_nobody(*args: str) -> subprocess.CompletedProcess:
    return run_fingerd("--check-config", "--user", "nobody", "--group", "nogroup", *args)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the check runs as the user the daemon becomes")


@needs_root
def test_check_config_refuses_a_status_file_the_daemon_user_cannot_reach(tmp_path):
    """pytest's directories are root's alone: the daemon, as nobody, would refuse to start, so the check says so."""
    result = check_as_nobody("--status-file", str(tmp_path / "status"))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"fingerd: argument --status-file: nobody (uid 65534) cannot reach {tmp_path / 'status'}"
    )


@needs_root
@pytest.mark.parametrize("option", ["--pidfile", "--log-file"])
def test_check_config_refuses_a_pidfile_or_log_the_daemon_user_cannot_write(shared_dir, option):
    result = check_as_nobody("--status-file", str(shared_dir / "status"), option, str(shared_dir / "fingerd.out"))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(f"fingerd: argument {option}: ")
    assert "nobody (uid 65534)" in result.stderr and str(shared_dir) in result.stderr


@needs_root
def test_check_config_passes_what_the_daemon_user_can_reach_and_writes_nothing(shared_dir):
    (shared_dir / "run").mkdir()
    (shared_dir / "run").chmod(0o777)
    result = check_as_nobody(
        "--status-file", str(shared_dir / "status"), "--pidfile", str(shared_dir / "run" / "fingerd.pid"),
        "--log-file", str(shared_dir / "run" / "fingerd.log"), "--setter-socket", "",
    )
    assert result.returncode == 0, result.stderr
    assert list((shared_dir / "run").iterdir()) == []


def test_check_config_reports_a_status_path_through_a_file_in_one_line(tmp_path):
    """What the start-up would stop on is said the same way here, not as a traceback."""
    (tmp_path / "file").write_text("")
    identity = ("--user", "root") if os.geteuid() == 0 else ()
    result = run_fingerd("--check-config", "--status-file", str(tmp_path / "file" / "status"), *identity)
    assert result.returncode == 2
    assert result.stderr == f"fingerd: argument --status-file: {tmp_path / 'file' / 'status'}: Not a directory\n"
