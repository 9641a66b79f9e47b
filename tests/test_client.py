"""The finger client as a command, against a real daemon and against sockets the tests own."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import ENTRY, ROOT, OneShotServer

STATUS = "alice: Writing the finger daemon\nbob: Out to lunch\n"
UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
HOSTILE = (
    b"ok \x1b[2J\x1b]0;title\x07 c1 \xc2\x9b\xc2\x85 bad \xff\xfe caf\xc3\xa9 \xe2\x80\xaertl\r\n"
    b"second\rline\n"
    b"no line end"
)


def client(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``python -m fingerd.client ARGS``; stdout and stderr as bytes."""
    return subprocess.run(
        [sys.executable, "-m", "fingerd.client", *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONIOENCODING="utf-8"),
        capture_output=True,
        timeout=timeout,
    )


@pytest.fixture
def daemon(start_daemon):
    return start_daemon(STATUS)


def test_asks_the_daemon(daemon):
    result = client(f"alice@127.0.0.1:{daemon.port}")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"Writing the finger daemon\n", b"")


@pytest.mark.parametrize("args", [("-l", "alice@{host}"), ("/W", "alice@{host}"), ("/W alice@{host}",)])
def test_verbose_form(daemon, args):
    result = client(*(arg.format(host=f"127.0.0.1:{daemon.port}") for arg in args))
    assert result.stdout == b"Login: alice\nPlan:\nWriting the finger daemon\n"


def test_user_list(daemon):
    result = client(f"@127.0.0.1:{daemon.port}")
    assert [line.split()[0] for line in result.stdout.decode().splitlines()] == ["alice", "bob"]


def test_default_host_is_localhost_and_port_option_sets_the_port(daemon):
    result = client("--port", str(daemon.port), "bob")
    assert (result.returncode, result.stdout) == (0, b"Out to lunch\n")


def test_finger_url(daemon):
    result = client(f"finger://127.0.0.1:{daemon.port}/bob")
    assert (result.returncode, result.stdout) == (0, b"Out to lunch\n")


def test_fingerd_query_subcommand(daemon):
    result = subprocess.run(
        [sys.executable, str(ENTRY), "query", f"bob@127.0.0.1:{daemon.port}"], cwd=ROOT, capture_output=True, timeout=30
    )
    assert (result.returncode, result.stdout) == (0, b"Out to lunch\n")


@pytest.mark.parametrize("before", [True, False])
def test_fingerd_query_asks_the_local_daemon_on_its_configured_port(daemon, tmp_path, before):
    """``-c FILE`` (before or after ``query``) gives the local daemon's finger-port to a target that names no host."""
    config = tmp_path / "fingerd.conf"
    config.write_text(f"finger-port = {daemon.port}\nbind = 127.0.0.1\n")
    arguments = ("-c", str(config), "query", "bob") if before else ("query", "-c", str(config), "bob")
    result = subprocess.run([sys.executable, str(ENTRY), *arguments], cwd=ROOT, capture_output=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"Out to lunch\n", b"")


def test_the_port_option_comes_before_the_config_file(daemon, tmp_path, ports):
    config = tmp_path / "fingerd.conf"
    config.write_text(f"finger-port = {ports.take()}\n")
    result = client("-c", str(config), "--port", str(daemon.port), "bob")
    assert (result.returncode, result.stdout) == (0, b"Out to lunch\n")
    config.write_text("finger-port = seventy-nine\n")
    refused = client("-c", str(config), "bob")
    assert refused.returncode == 2
    assert f"finger-port in {config} is not a port: 'seventy-nine'" in refused.stderr.decode()


def test_ipv6_loopback_daemon(start_daemon):
    daemon = start_daemon(STATUS, bind="::1")
    assert client(f"alice@[::1]:{daemon.port}").stdout == b"Writing the finger daemon\n"
    assert client(f"finger://[::1]:{daemon.port}/bob").stdout == b"Out to lunch\n"
    daemon.wait_for_log('::1 "bob" found')


def test_closed_port_is_refused(ports):
    result = client(f"alice@127.0.0.1:{ports.take()}")
    assert result.returncode == 3
    assert result.stdout == b""
    assert result.stderr.count(b"\n") == 1
    assert b"connection refused" in result.stderr


def test_server_that_never_answers_times_out():
    with OneShotServer(None) as silent:
        result = client("--timeout", "0.5", f"alice@127.0.0.1:{silent.port}")
    assert result.returncode == 4
    assert result.stderr.count(b"\n") == 1
    assert b"timed out" in result.stderr


def test_what_arrived_before_a_timeout_is_shown():
    with OneShotServer(b"first line\r\n", keep_open=True) as server:
        result = client("--timeout", "1", f"alice@127.0.0.1:{server.port}")
    assert (result.returncode, result.stdout) == (4, b"first line\n")
    assert b"timed out" in result.stderr


def test_unknown_host():
    result = client("alice@no-such-host.invalid")
    assert result.returncode == 5
    assert result.stderr.count(b"\n") == 1
    assert b"unknown host no-such-host.invalid" in result.stderr


@pytest.mark.parametrize("target", ["alice@host:99999", "al\x1bice@localhost", "alice@2130706433", "finger://u@h/x"])
def test_bad_targets_are_usage_errors(target):
    result = client(target)
    assert result.returncode == 2
    assert result.stdout == b""


def test_two_targets_are_a_usage_error():
    assert client("alice", "bob").returncode == 2


def test_hostile_reply_is_filtered():
    with OneShotServer(HOSTILE) as server:
        result = client(f"alice@127.0.0.1:{server.port}")
    assert server.received == b"alice\r\n"
    assert result.returncode == 0
    text = result.stdout.decode("utf-8")
    assert not UNSAFE.search(text.replace("\n", ""))
    assert text == "ok [2J]0;title c1  bad \ufffd\ufffd caf\u00e9 rtl\nsecondline\nno line end\n"


def test_hostile_reply_shown_escaped():
    with OneShotServer(HOSTILE) as server:
        result = client("--escape", f"/W alice@127.0.0.1:{server.port}")
    assert server.received == b"/W alice\r\n"
    text = result.stdout.decode("utf-8")
    assert not UNSAFE.search(text.replace("\n", ""))
    assert text == (
        "ok ^[[2J^[]0;title^G c1 \\x9b\\x85 bad \\xff\\xfe caf\u00e9 \\u202ertl\nsecond^Mline\nno line end\n"
    )


def test_hostile_reply_in_ascii():
    with OneShotServer(HOSTILE) as server:
        result = client("--ascii", f"alice@127.0.0.1:{server.port}")
    assert result.stdout == b"ok [2J]0;title c1  bad  caf rtl\nsecondline\nno line end\n"


def test_forwarding_query_is_sent_to_the_rightmost_host():
    with OneShotServer(b"relayed\r\n") as server:
        result = client(f"alice@one.example@127.0.0.1:{server.port}")
    assert server.received == b"alice@one.example\r\n"
    assert result.stdout == b"relayed\n"
