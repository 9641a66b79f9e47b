"""Starting, stopping, reloading and configuring the real daemon process."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from conftest import finger, read_all, run_fingerd


def test_sigterm_stops_cleanly_and_removes_the_pidfile(start_daemon):
    daemon = start_daemon("alice: hi\n", pidfile="{workdir}/fingerd.pid")
    pidfile = daemon.workdir / "fingerd.pid"
    assert pidfile.read_text().strip() == str(daemon.process.pid)
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    daemon.wait_for("STOPPING=1", timeout=5)
    assert daemon.process.wait(5) == 0
    assert time.monotonic() - started < 5
    assert not pidfile.exists()


def test_sigint_stops_cleanly(start_daemon):
    daemon = start_daemon("alice: hi\n")
    daemon.signal(signal.SIGINT)
    assert daemon.process.wait(5) == 0


def test_in_flight_reply_is_finished_on_sigterm(start_daemon):
    daemon = start_daemon("alice: hi\n")
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"ali")
        time.sleep(0.2)
        daemon.signal(signal.SIGTERM)
        time.sleep(0.3)
        sock.sendall(b"ce\r\n")
        assert read_all(sock) == b"hi\r\n"
    assert daemon.process.wait(5) == 0


def test_no_new_connections_after_sigterm(start_daemon):
    daemon = start_daemon("alice: hi\n")
    daemon.signal(signal.SIGTERM)
    assert daemon.process.wait(5) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", daemon.port), timeout=2)


def test_a_live_pidfile_refuses_a_second_start(start_daemon, ports):
    first = start_daemon("alice: hi\n", pidfile="{workdir}/fingerd.pid")
    pidfile = first.workdir / "fingerd.pid"
    socket_path = first.workdir / "second.sock"
    result = run_fingerd(
        "--bind", "127.0.0.1", "--finger-port", str(ports.take()), "--user", "root", "--web-port", "0",
        "--setter-socket", str(socket_path), "--status-file", str(first.status_file), "--pidfile", str(pidfile),
    )
    assert result.returncode == 1
    assert "already running" in result.stderr
    assert not socket_path.exists(), "a failed start leaves no setter socket behind"
    assert pidfile.read_text().strip() == str(first.process.pid)


def test_a_stale_pidfile_is_replaced(start_daemon):
    daemon = start_daemon("alice: hi\n", pidfile="{workdir}/fingerd.pid")
    daemon.stop()
    pidfile = daemon.workdir / "fingerd.pid"
    pidfile.write_text("999999\n")
    daemon.start()
    assert pidfile.read_text().strip() == str(daemon.process.pid)


def test_sighup_reopens_the_log_file(start_daemon):
    daemon = start_daemon("alice: hi\n", log_file="{workdir}/fingerd.log")
    log_file = daemon.workdir / "fingerd.log"
    daemon.query(b"alice\r\n")
    deadline = time.monotonic() + 3
    while '"alice" found' not in log_file.read_text():
        assert time.monotonic() < deadline, "the access line is written"
        time.sleep(0.05)
    rotated = daemon.workdir / "fingerd.log.1"
    os.rename(log_file, rotated)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for("READY=1", timeout=5)
    daemon.query(b"bob\r\n")
    deadline = time.monotonic() + 3
    while '"bob" no-such-user' not in (log_file.read_text() if log_file.exists() else ""):
        assert time.monotonic() < deadline, "the reopened log gets new lines"
        time.sleep(0.05)
    assert '"alice" found' in rotated.read_text()
    assert '"alice" found' not in log_file.read_text()


def test_port_in_use_is_one_clear_line(ports, tmp_path):
    port = ports.take()
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = run_fingerd(
            "--bind", "127.0.0.1", "--finger-port", str(port), "--user", "root", "--web-port", "0",
            "--setter-socket", "", "--status-file", str(tmp_path / "status"),
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, option",
    [
        (["--finger-port", "x"], "--finger-port"),
        (["--finger-port", "70000"], "--finger-port"),
        (["--finger-port", "0"], "--finger-port"),
        (["--timeout", "-1"], "--timeout"),
        (["--timeout", "soon"], "--timeout"),
        (["--max-connections", "0"], "--max-connections"),
        (["--log-level", "loud"], "--log-level"),
        (["--source", "ldap"], "--source"),
        (["--source", "file", "--source", "file"], "--source"),
        (["--bind", "no-such-host.invalid"], "--bind"),
        (["--status-file", " "], "--status-file"),
        (["--log-file", "/nonexistent-dir/fingerd.log"], "--log-file"),
        (["--no-such-option"], "--no-such-option"),
    ],
)
def test_bad_option_exits_2_naming_it(args, option, tmp_path):
    result = run_fingerd("--status-file", str(tmp_path / "status"), *args)
    assert result.returncode == 2, result.stderr
    assert option in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_unknown_config_key_exits_2_in_one_line_naming_file_line_and_key(tmp_path):
    config = tmp_path / "fingerd.conf"
    config.write_text("finger-port = 7979\n# the port\nfinger-prot = 80\n")
    result = run_fingerd("-c", str(config))
    assert result.returncode == 2
    assert result.stderr == f"fingerd: {config}:3: unknown key 'finger-prot' (did you mean 'finger-port'?)\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("timeout = never\n", "{config}:2: timeout: invalid value 'never': seconds, more than 0 and at most 86400"),
        ("finger-port = 7979\n", "{config}:2: finger-port: invalid value 'x': a port number from 0 to 65535"),
        ("version = 1\n", "{config}:2: unknown key 'version' (keys are the long options without their dashes)"),
    ],
)
def test_a_bad_line_in_the_config_file_is_one_line_naming_it(tmp_path, text, expected):
    """The value that counts is the last one given; a key the command line alone takes is not a config key."""
    config = tmp_path / "fingerd.conf"
    config.write_text("# first\n" + text.replace("7979", "x"))
    result = run_fingerd("-c", str(config), "--status-file", str(tmp_path / "status"))
    assert result.returncode == 2
    assert result.stderr == "fingerd: " + expected.format(config=config) + "\n"


def test_a_bad_value_on_the_command_line_still_shows_the_usage(tmp_path):
    result = run_fingerd("--status-file", str(tmp_path / "status"), "--timeout", "never")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: fingerd")


def test_missing_config_file_exits_2(tmp_path):
    result = run_fingerd("-c", str(tmp_path / "absent.conf"))
    assert result.returncode == 2
    assert "absent.conf" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="--user is only checked when started as root")
def test_unknown_user_exits_2(tmp_path):
    result = run_fingerd("--status-file", str(tmp_path / "status"), "--user", "no-such-user-here")
    assert result.returncode == 2
    assert "--user" in result.stderr


def test_check_config_shows_effective_values_and_binds_nothing(tmp_path, ports):
    port = ports.take()
    config = tmp_path / "fingerd.conf"
    config.write_text(f"finger-port = {port}\nlist-users = false\n# comment\n")
    result = run_fingerd("-c", str(config), "--check-config", "--timeout", "3", env={"FINGERD_MAX_CONNECTIONS": "7"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for expected in (f"finger-port = {port}", "list-users = false", "timeout = 3.0", "max-connections = 7"):
        assert expected in lines
    assert "FINGERD_MAX_CONNECTIONS" in result.stdout, "where each value came from"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_unknown_environment_variable_exits_2(tmp_path):
    result = run_fingerd("--status-file", str(tmp_path / "status"), env={"FINGERD_FINGERPORT": "79"})
    assert result.returncode == 2
    assert "FINGERD_FINGERPORT" in result.stderr.splitlines()[-1]


def test_check_config_is_not_a_config_key(tmp_path):
    config = tmp_path / "fingerd.conf"
    config.write_text("check-config = true\n")
    result = run_fingerd("-c", str(config))
    assert result.returncode == 2
    assert "check-config" in result.stderr


def test_syslog_needs_a_syslog_socket(tmp_path):
    result = run_fingerd("--status-file", str(tmp_path / "status"), "--syslog", "--check-config")
    if os.path.exists("/dev/log"):
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 2
        assert "--syslog" in result.stderr.splitlines()[-1]


def test_environment_beats_the_config_file(start_daemon, ports):
    env_port = ports.take()
    daemon = start_daemon("alice: hi\n", env={"FINGERD_FINGER_PORT": str(env_port)})
    assert b"hi\r\n" == finger(env_port, b"alice\r\n")
    with pytest.raises(ConnectionRefusedError):
        finger(daemon.port, b"alice\r\n")


def test_command_line_beats_the_environment(start_daemon, ports):
    env_port, line_port = ports.take(), ports.take()
    daemon = start_daemon(
        "alice: hi\n", env={"FINGERD_FINGER_PORT": str(env_port)}, args=("--finger-port", str(line_port))
    )
    assert finger(line_port, b"alice\r\n") == b"hi\r\n"
    for port in (env_port, daemon.port):
        with pytest.raises(ConnectionRefusedError):
            finger(port, b"alice\r\n")


def test_booleans_from_the_environment(start_daemon):
    daemon = start_daemon("alice: hi\n", env={"FINGERD_LIST_USERS": "false"})
    assert daemon.query(b"\r\n") == b"Finger online user list denied\r\n"


def test_access_lines_are_written_before_exit(start_daemon):
    daemon = start_daemon("alice: hi\n")
    daemon.query(b"alice\r\n")
    daemon.signal(signal.SIGTERM)
    assert daemon.process.wait(5) == 0
    assert '127.0.0.1 "alice" found' in daemon.log()
