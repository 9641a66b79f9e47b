"""The command source through the running daemon: the tutorial's "run finger locally"."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from conftest import finger, run_fingerd


def script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_command_answers_with_the_name_as_one_argument(start_daemon, tmp_path):
    calls = tmp_path / "calls"
    program = script(tmp_path, "lookup", f'printf "%s|" "$@" >> {calls}; echo "plan of $1"')
    daemon = start_daemon("alice: filed\n", source="[file, command]", command=f"{program} --fixed 'two words'")
    assert daemon.text("alice") == "filed\r\n"
    assert daemon.text("bob") == "plan of --fixed\r\n"
    assert calls.read_text() == "--fixed|two words|bob|"
    assert daemon.text("-rf") == "No such user\r\n"
    assert daemon.text("bob;id") == "No such user\r\n"
    assert calls.read_text() == "--fixed|two words|bob|"


def test_a_command_that_exits_non_zero_knows_nobody(start_daemon):
    daemon = start_daemon("", source="[command]", command="/bin/false")
    assert daemon.text("bob") == "No such user\r\n"


def test_a_sleeping_command_times_out_and_others_are_still_served(start_daemon, tmp_path):
    marker = tmp_path / "pids"
    program = script(tmp_path, "slow", f'echo $$ >> {marker}; if [ "$1" = fast ]; then echo quick; else sleep 30; fi')
    daemon = start_daemon("", source="[command]", command=str(program), command_timeout=1)
    replies: list[bytes] = []
    slow = [threading.Thread(target=lambda: replies.append(finger(daemon.port, b"slow\r\n"))) for _ in range(3)]
    for thread in slow:
        thread.start()
    time.sleep(0.2)
    assert daemon.text("fast") == "quick\r\n"
    for thread in slow:
        thread.join()
    assert replies == [b"Lookup failed, try again later\r\n"] * 3
    daemon.wait_for_log("did not finish in time")
    for pid in marker.read_text().split():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_stopping_the_daemon_kills_running_commands(start_daemon, tmp_path):
    marker = tmp_path / "pid"
    program = script(tmp_path, "stuck", f"echo $$ > {marker}; sleep 30")
    daemon = start_daemon("", source="[command]", command=str(program), command_timeout=8, timeout=10)
    asker = threading.Thread(target=lambda: finger(daemon.port, b"bob\r\n"))
    asker.start()
    deadline = time.monotonic() + 5
    while not marker.exists() or not marker.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 5
    asker.join()
    pid = int(marker.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.parametrize(
    "options, message",
    [
        (["--source", "command"], "argument --source: command needs --command"),
        (["--command", "/bin/echo"], "argument --command: set, but --source does not list command"),
        (["--source", "command", "--command", "no-such-program-here"], "no executable 'no-such-program-here'"),
        (["--source", "command", "--command", "/bin/echo 'unbalanced"], "cannot split"),
        (["--source", "command", "--command", "  "], "argument --command: empty command line"),
        (["--passwd-deny", "bob"], "argument --passwd-deny: set, but --source does not list passwd"),
        (["--forwarding", "--forward-allow", "x.example"], None),
        (["--forward-allow", "x.example"], "argument --forward-allow: set, but --forwarding is off"),
        (["--irc-server", "a" * 64 + ".example"], "argument --irc-server: not a host name or address"),
    ],
)
def test_bad_source_options_are_refused(options, message):
    result = run_fingerd("--check-config", *options)
    if message is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_source_timeout_longer_than_timeout_is_cut_and_shown_cut():
    result = run_fingerd("--check-config", "--source", "command", "--command", "/bin/echo", "--command-timeout", "60")
    assert result.returncode == 0, result.stderr
    assert "command-timeout = 10.0" in result.stdout


def test_a_bare_program_name_is_found_on_the_fixed_path():
    result = run_fingerd("--check-config", "--source", "command", "--command", "echo hello")
    assert result.returncode == 0, result.stderr
    assert "command = echo hello" in result.stdout
