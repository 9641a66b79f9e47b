"""systemd socket activation: listening sockets passed in (``sd_listen_fds``) are served instead of bound.

The real tool does the passing: ``systemd-socket-activate`` (from the
systemd package) listens, and on the first connection execs the daemon
with the sockets as descriptors 3 and 4 and ``LISTEN_PID``, ``LISTEN_FDS``
and ``LISTEN_FDNAMES`` set, as a ``.socket`` unit would.  The daemon is
told ``--user nobody``: it binds nothing, so it ends as nobody with no
capability whatever it was started as.  (Started as nobody from the
start, as ``init/fingerd.socket`` runs it, is not tried here: this
machine's interpreter lives under /root, which nobody cannot reach.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ENTRY, ROOT, finger
from fingerd.daemon.activation import ActivationError, passed_descriptors

STATUS = "alice: handed a socket\n"


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "finger:web"}, [(3, "finger"), (4, "web")]),
        ({"LISTEN_PID": "42", "LISTEN_FDS": "1"}, [(3, "finger")]),
        ({"LISTEN_PID": "41", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "finger:web"}, []),
        ({}, []),
    ],
)
def test_what_was_passed_to_this_process(environ, expected):
    """Meant for another process (a parent's variables inherited), nothing was passed to this one."""
    assert passed_descriptors(environ, 42) == expected


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"LISTEN_FDS": "two"}, "LISTEN_FDS is not a count of descriptors: 'two'"),
        ({"LISTEN_FDS": "2"}, "2 sockets passed, named nothing: name each one"),
        ({"LISTEN_FDS": "2", "LISTEN_FDNAMES": "finger"}, "2 sockets passed, named finger"),
        ({"LISTEN_FDS": "1", "LISTEN_FDNAMES": "fingerd.socket"}, "a socket passed is named 'fingerd.socket'"),
        ({"LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:web"}, "two sockets passed with one name: web:web"),
    ],
)
def test_what_cannot_be_used_is_said(environ, message):
    with pytest.raises(ActivationError, match=message):
        passed_descriptors({"LISTEN_PID": "42", **environ}, 42)


@pytest.fixture
def open_dir(shared_dir):
    """The status file where nobody can read it."""
    (shared_dir / "status").write_text(STATUS)
    return shared_dir


def start_on(listen: list[str], names: str, open_dir: Path, *options: str) -> subprocess.Popen:
    """``systemd-socket-activate`` listening on ``listen`` (as given to -l) for the daemon, which starts at the first connection."""
    assert shutil.which("systemd-socket-activate"), "systemd-socket-activate (package systemd) is needed"
    command = ["systemd-socket-activate"]
    for address in listen:
        command += ["-l", address]
    command += [
        f"--fdname={names}", sys.executable, str(ENTRY), "--status-file", str(open_dir / "status"),
        "--setter-socket", "", "--user", "nobody", "--group", "nogroup", *options,
    ]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_listening(ports: list[int]) -> None:
    deadline = time.monotonic() + 10
    while not all(_listening(port) for port in ports):
        assert time.monotonic() < deadline, "systemd-socket-activate never listened"
        time.sleep(0.05)


def activate(open_dir: Path, ports, names: str, *options: str) -> tuple[subprocess.Popen, list[int]]:
    """`start_on` two loopback ports, once both listen."""
    chosen = [ports.take(), ports.take()]
    process = start_on([f"127.0.0.1:{port}" for port in chosen], names, open_dir, *options)
    wait_listening(chosen)
    return process, chosen


def _listening(port: int) -> bool:
    return any(f":{port:04X} " in line and line.split()[3] == "0A" for line in Path("/proc/net/tcp").read_text().splitlines()[1:])


def knock(port: int) -> None:
    """The first connection, which makes systemd-socket-activate start the daemon; a daemon that refuses to start resets it."""
    with contextlib.suppress(OSError):
        finger(port, b"alice\r\n")


def stop(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, errors = process.communicate(timeout=10)
    return process.returncode, errors


def test_the_daemon_serves_finger_and_web_on_the_sockets_passed_to_it(open_dir, ports):
    """Ports chosen by the service manager; --finger-port and --web-port are not bound at all."""
    process, (finger_port, web_port) = activate(open_dir, ports, "finger:web", "--finger-port", "1", "--web-port", "2")
    try:
        assert finger(finger_port, b"alice\r\n") == b"handed a socket\r\n"
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/~alice", timeout=10) as response:
            assert response.status == 200 and b"handed a socket" in response.read()
        status = Path(f"/proc/{process.pid}/status").read_text()
        if os.geteuid() == 0:
            assert "\nUid:\t65534\t65534\t65534\t65534\n" in status and "CapEff:\t0000000000000000" in status
    finally:
        code, errors = stop(process)
    assert code == 0, errors
    assert f"finger: serving on 127.0.0.1:{finger_port}, passed by the service manager" in errors
    assert f"web: serving on 127.0.0.1:{web_port}, passed by the service manager" in errors


def test_a_socket_passed_for_a_service_that_is_off_stops_the_start(open_dir, ports):
    process, (finger_port, _) = activate(open_dir, ports, "finger:web", "--web-port", "0")
    knock(finger_port)
    _, errors = process.communicate(timeout=10)
    assert process.returncode == 2
    assert "socket activation: web passed, but that service is off in the configuration" in errors


def test_a_socket_with_an_unknown_name_is_refused_with_the_names_to_give(open_dir, ports):
    process, (finger_port, _) = activate(open_dir, ports, "finger:fingerd.socket")
    knock(finger_port)
    _, errors = process.communicate(timeout=10)
    assert process.returncode == 2
    assert "socket activation: a socket passed is named 'fingerd.socket'; the names are finger, web, https" in errors


def test_a_local_socket_passed_for_finger_is_refused(open_dir, ports):
    path = open_dir / "finger.sock"
    process = start_on([str(path), f"127.0.0.1:{ports.take()}"], "finger:tcp-setter", open_dir, "--setter-port", "1")
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, "systemd-socket-activate never listened"
        time.sleep(0.05)
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.sendall(b"alice\r\n")
    _, errors = process.communicate(timeout=10)
    assert process.returncode == 2
    assert "socket activation: the finger socket passed (descriptor 3) is not an IPv4 or IPv6 socket" in errors


def test_the_tcp_setter_is_never_served_beyond_loopback(open_dir, ports):
    """It believes what the client says about who it is: a socket on every address is refused, not served."""
    finger_port, setter_port = ports.take(), ports.take()
    process = start_on(
        [f"127.0.0.1:{finger_port}", f"0.0.0.0:{setter_port}"], "finger:tcp-setter", open_dir, "--setter-port", "1"
    )
    wait_listening([finger_port])
    knock(finger_port)
    _, errors = process.communicate(timeout=10)
    assert process.returncode == 2
    assert "listens on 0.0.0.0; the TCP setter listens on loopback only" in errors
