"""The real Debian ``finger`` client reads the daemon's answers.

The client has no port option: it looks up ``finger/tcp`` in
``/etc/services``.  Each run gets a private mount namespace (``unshare -rm``,
which needs no root) in which a copy of ``/etc/services`` maps finger to the
test daemon's port.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

STATUS = "alice: Writing the finger daemon\nbob: Out to lunch\ncarol:\n line one\n \x1b[2Jline two\n"


@pytest.fixture
def finger_client(tmp_path):
    binary = shutil.which("finger")
    assert binary, "the Debian finger client is required: apt-get install finger (the test command installs it)"

    def run(port: int, *args: str) -> str:
        services = tmp_path / "services"
        lines = Path("/etc/services").read_text().splitlines()
        kept = [line for line in lines if not line.startswith("finger")]
        services.write_text("\n".join(kept + [f"finger\t\t{port}/tcp"]) + "\n")
        script = f'mount --bind "{services}" /etc/services && exec "{binary}" "$@"'
        result = subprocess.run(
            ["unshare", "-rm", "sh", "-c", script, "finger", *args],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


def test_finger_user(start_daemon, finger_client):
    daemon = start_daemon(STATUS)
    output = finger_client(daemon.port, "alice@127.0.0.1")
    assert "Writing the finger daemon" in output
    daemon.wait_for_log('"alice" found')


def test_finger_long_sends_verbose(start_daemon, finger_client):
    daemon = start_daemon(STATUS)
    output = finger_client(daemon.port, "-l", "carol@127.0.0.1")
    assert "Login: carol" in output
    assert "line one" in output
    assert "^[[2Jline two" in output
    daemon.wait_for_log('"/W carol" found')


def test_finger_host_lists_users(start_daemon, finger_client):
    daemon = start_daemon(STATUS)
    output = finger_client(daemon.port, "@127.0.0.1")
    assert "alice" in output and "Out to lunch" in output and "carol" in output


def test_finger_unknown_user(start_daemon, finger_client):
    daemon = start_daemon(STATUS)
    assert "No such user" in finger_client(daemon.port, "mallory@127.0.0.1")
