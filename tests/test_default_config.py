"""Without ``-c`` the daemon reads /etc/fingerd.conf when it exists; ``-c`` names another instead.

The real /etc is never written: each case runs in a private mount
namespace (``unshare -m``) with an overlay on /etc, and writes its
/etc/fingerd.conf there, so it works whether the machine has one or not.
That needs root, as the privilege-drop tests do.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fingerd
from conftest import ENTRY, ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a mount namespace with an overlay on /etc")

ETC_CONFIG = "finger-port = 7777\nweb-port = 0\nsetter-socket =\nlog-level = info\n"


def with_etc_config(
    tmp_path: Path, text: str | None, *arguments: str, under: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """Run ``UNDER fingerd.py ARGUMENTS`` with ``text`` as /etc/fingerd.conf (None: a directory), seen by it only."""
    assert shutil.which("unshare"), "unshare (util-linux) is needed"
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    if text is None:
        (upper / "fingerd.conf").mkdir()
    else:
        (upper / "fingerd.conf").write_text(text)
    command = " ".join(shlex.quote(word) for word in (*under, sys.executable, str(ENTRY), *arguments))
    script = f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc && exec {command}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_without_c_the_daemon_reads_etc_fingerd_conf(tmp_path):
    result = with_etc_config(
        tmp_path, ETC_CONFIG, "--check-config", "--status-file", str(tmp_path / "status"), "--user", "root"
    )
    assert result.returncode == 0, result.stderr
    assert "finger-port = 7777" in result.stdout
    assert "/etc/fingerd.conf" in result.stdout.partition("# where the values came from")[2]


def test_c_names_another_file_and_etc_fingerd_conf_is_not_read(tmp_path):
    other = tmp_path / "other.conf"
    other.write_text("timeout = 5\n")
    result = with_etc_config(tmp_path, ETC_CONFIG, "-c", str(other), "--check-config", "--status-file", "/x")
    assert result.returncode == 0, result.stderr
    assert "finger-port = 79\n" in result.stdout and "timeout = 5.0" in result.stdout
    assert "/etc/fingerd.conf" not in result.stdout


def test_the_daemon_logs_which_config_file_it_read(tmp_path, ports):
    """Started for real without -c, it says where its configuration came from (then ``timeout`` stops it)."""
    config = ETC_CONFIG.replace("7777", str(ports.take())) + "bind = 127.0.0.1\n"
    status = tmp_path / "status"
    status.write_text("alice: hi\n")
    result = with_etc_config(
        tmp_path, config, "--status-file", str(status), "--user", "root", "--group", "root", under=("timeout", "3")
    )
    assert "ready" in result.stderr, result.stderr
    assert "config file: /etc/fingerd.conf" in result.stderr


def test_an_unreadable_etc_fingerd_conf_stops_the_start_in_one_line(tmp_path):
    """Not defaults the administrator never chose; and --version still answers."""
    result = with_etc_config(tmp_path, None, "--check-config", "--status-file", str(tmp_path / "status"))
    assert result.returncode == 2
    assert result.stderr == "fingerd: cannot read /etc/fingerd.conf: Is a directory (name another with -c)\n"
    (tmp_path / "again").mkdir()
    version = with_etc_config(tmp_path / "again", None, "--version")
    assert (version.returncode, version.stdout) == (0, f"fingerd {fingerd.__version__}\n")
