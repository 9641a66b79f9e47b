"""What is wrong with the daemon's identity or files is said at start-up, once.

Started as root, the daemon checks, as the user it became, that it can read
and watch the status file (else: one line naming --status-file, exit 2) and
that the setters will be able to save (else: a warning).  Unknown users and
groups are configuration errors (exit 2, naming the option).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import run_fingerd

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the identity checks apply when started as root")


def start_as_nobody(ports, status: Path, *args: str):
    return run_fingerd(
        "--bind", "127.0.0.1", "--finger-port", str(ports.take()), "--web-port", "0", "--setter-socket", "",
        "--user", "nobody", "--group", "nogroup", "--status-file", str(status), *args,
    )


@pytest.mark.parametrize("option, value", [("--user", "no-such-user-here"), ("--group", "no-such-group-here")])
def test_an_unknown_user_or_group_exits_2_naming_it(option, value, tmp_path):
    result = run_fingerd("--status-file", str(tmp_path / "status"), option, value)
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert option in last and value in last
    assert "Traceback" not in result.stderr


def test_an_unreadable_status_file_stops_start_up(ports, nobody_dir):
    status = nobody_dir / "status"
    status.write_text("alice: hi\n")
    os.chown(status, 0, 0)
    status.chmod(0o600)
    result = start_as_nobody(ports, status)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "CRITICAL" in line]
    assert len(errors) == 1
    assert f"argument --status-file: {status} is not readable by nobody (uid 65534)" in errors[0]
    assert "ready" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "mode, exists, problem",
    [
        (0o700, True, "cannot reach {status}"),
        (0o711, False, "cannot list {directory}"),
        (0o711, True, "cannot list {directory}, so edits go unseen"),
    ],
)
def test_a_status_directory_it_cannot_watch_stops_start_up(ports, nobody_dir, mode, exists, problem):
    directory = nobody_dir / "hidden"
    directory.mkdir()
    directory.chmod(mode)
    status = directory / "status"
    if exists:
        status.write_text("alice: hi\n")
        status.chmod(0o644)
    result = start_as_nobody(ports, status)
    assert result.returncode == 2, result.stderr
    expected = problem.format(status=status, directory=directory)
    assert f"argument --status-file: nobody (uid 65534) {expected}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_status_directory_setters_cannot_write_is_a_warning(start_daemon, nobody_dir):
    locked = nobody_dir / "locked"
    locked.mkdir()
    (locked / "status").write_text("alice: hi\n")
    daemon = start_daemon(
        None,
        workdir=nobody_dir,
        user="nobody",
        group="nogroup",
        status_file=str(locked / "status"),
        setter_socket=str(nobody_dir / "setter.sock"),
    )
    assert daemon.query(b"alice\r\n") == b"hi\r\n"
    assert f"{locked} is not writable by nobody (uid 65534): statuses sent with 'fingerd set' cannot be saved" in (
        daemon.log()
    )
    assert daemon.stop() == 0


def test_no_warning_when_the_directories_belong_to_the_user(start_daemon, nobody_dir):
    (nobody_dir / "status").write_text("alice: hi\n")
    daemon = start_daemon(
        None,
        workdir=nobody_dir,
        user="nobody",
        group="nogroup",
        status_file=str(nobody_dir / "status"),
        setter_socket=str(nobody_dir / "setter.sock"),
    )
    assert daemon.query(b"alice\r\n") == b"hi\r\n"
    assert daemon.stop() == 0
    assert "WARNING" not in daemon.log()
