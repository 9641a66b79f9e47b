"""Started as root, the daemon binds, then runs as --user/--group.

The daemon runs under a virtual environment made from Debian's
``/usr/bin/python3`` in a directory only root can read, so any module that
the daemon imported lazily after the drop would fail to load and the test
would see it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import venv
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")

SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="session")
def system_python(tmp_path_factory) -> str:
    assert os.path.exists(SYSTEM_PYTHON), "Debian's python3 is part of the test machine"
    home = tmp_path_factory.mktemp("system-venv")
    venv.EnvBuilder(with_pip=True).create(home)
    python = str(home / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        check=True,
        timeout=300,
    )
    return python


@pytest.fixture
def shared_dir():
    """A directory the unprivileged daemon can read."""
    with tempfile.TemporaryDirectory(prefix="fingerd-drop-") as name:
        path = Path(name)
        path.chmod(0o755)
        yield path


def thread_identities(pid: int) -> list[dict[str, str]]:
    identities = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
        identities.append({key: fields[key].split() for key in ("Uid", "Gid", "Groups")})
    return identities


def test_every_thread_runs_as_nobody(start_daemon, system_python, shared_dir):
    status = shared_dir / "status"
    status.write_text("alice: before\n")
    status.chmod(0o644)
    daemon = start_daemon(
        None, python=system_python, workdir=shared_dir, user="nobody", group="nogroup", status_file=str(status)
    )
    assert daemon.query(b"alice\r\n") == b"before\r\n"
    identities = thread_identities(daemon.process.pid)
    assert len(identities) >= 4, "acceptor, waiting room, watcher and reloader are running"
    for identity in identities:
        assert identity == {"Uid": ["65534"] * 4, "Gid": ["65534"] * 4, "Groups": []}
    assert "dropped privileges to nobody:nogroup" in daemon.log()

    status.write_text("alice: after\n")
    for _ in range(100):
        if daemon.query(b"alice\r\n") == b"after\r\n":
            break
        time.sleep(0.02)
    assert daemon.query(b"alice\r\n") == b"after\r\n"
    daemon.signal(signal.SIGHUP)
    daemon.wait_for("READY=1", timeout=5)
    assert daemon.query(b"\xff\r\n") == b"No such user\r\n"
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()
    assert "ModuleNotFoundError" not in daemon.log()
