"""Local users setting their status, against the real daemon and the real client."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import ENTRY, ROOT, listening_sockets, read_all

STATUS = "# the tilde status board\nalice: hi\n\n# bob below\nbob: out\n  to lunch\nnot an entry\n"


@pytest.fixture
def setter(start_daemon, shared_dir):
    path = str(shared_dir / "run" / "setter.sock")
    daemon = start_daemon(STATUS, setter_socket=path)
    daemon.setter_socket = path
    return daemon


def set_status(daemon, *args: str, stdin: bytes | None = None, command=(sys.executable, str(ENTRY))):
    return subprocess.run(
        [*command, "set", "--socket", daemon.setter_socket, *args],
        input=stdin,
        capture_output=True,
        timeout=20,
    )


def test_set_own_status(setter):
    result = set_status(setter, "Reading", "RFC", "1288")
    assert result.returncode == 0, result.stderr
    assert b"set status of root" in result.stdout
    setter.wait_for_reply(b"root\r\n", b"Reading RFC 1288\r\n")


def test_root_sets_and_clears_another_users_status(setter):
    assert set_status(setter, "--for", "alice", "back at 3").returncode == 0
    setter.wait_for_reply(b"alice\r\n", b"back at 3\r\n")
    assert set_status(setter, "--for", "alice", "--clear").returncode == 0
    setter.wait_for_reply(b"alice\r\n", b"No such user\r\n")


def test_multi_line_status_from_stdin_keeps_its_shape(setter):
    plan = b"Plan for the week:\n\n  * write tests\n\t* ship\n"
    assert set_status(setter, "--for", "carol", stdin=plan).returncode == 0
    setter.wait_for_reply(b"/W carol\r\n", b"Login: carol\r\nPlan:\r\nPlan for the week:\r\n\r\n  * write tests\r\n\t* ship\r\n")


def test_comments_order_and_other_entries_are_kept(setter):
    before = setter.status_file.read_bytes()
    assert set_status(setter, "--for", "bob", "in").returncode == 0
    assert set_status(setter, "--for", "dave", "new").returncode == 0
    after = setter.status_file.read_bytes()
    assert after == before.replace(b"bob: out\n  to lunch\n", b"bob: in\n") + b"dave: new\n"


def test_fifty_concurrent_setters_all_land(setter):
    def ask(number: int) -> None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(20)
            sock.connect(setter.setter_socket)
            status = f"status number {number}".encode()
            sock.sendall(f"SET {len(status)} user{number}\n".encode() + status)
            sock.shutdown(socket.SHUT_WR)
            replies[number] = read_all(sock)

    replies: dict[int, bytes] = {}
    threads = [threading.Thread(target=ask, args=(number,)) for number in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(reply.startswith(b"OK") for reply in replies.values()), replies
    text = setter.status_file.read_text()
    for number in range(50):
        assert f"user{number}: status number {number}\n" in text
    assert text.startswith(STATUS)
    setter.wait_for_reply(b"user49\r\n", b"status number 49\r\n")


def test_hand_edits_and_setters_take_turns(setter):
    for round_number in range(5):
        subprocess.run(["sed", "-i", f"s/^alice: .*/alice: hand edit {round_number}/", str(setter.status_file)], check=True)
        assert set_status(setter, "--for", "bob", f"setter {round_number}").returncode == 0
        with open(setter.status_file, "a") as handle:
            handle.write(f"extra{round_number}: appended by hand\n")
    setter.wait_for_reply(b"alice\r\n", b"hand edit 4\r\n")
    setter.wait_for_reply(b"bob\r\n", b"setter 4\r\n")
    setter.wait_for_reply(b"extra4\r\n", b"appended by hand\r\n")


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (("--for", "../etc/passwd", "x"), None, b"not a valid user name"),
        (("--for=-rf", "x"), None, b"not a valid user name"),
        (("\x1b[2Jgotcha",), None, b"control character U+001B"),
        ((), b"x" * 9000, b"status too long"),
        ((), b"\xff\xfe", b"not UTF-8"),
    ],
)
def test_bad_requests_are_refused_and_nothing_changes(setter, args, stdin, message):
    before = setter.status_file.read_bytes()
    result = set_status(setter, *args, stdin=stdin)
    assert result.returncode == 1
    assert message in result.stderr
    assert setter.status_file.read_bytes() == before


def test_a_silent_client_times_out(start_daemon, shared_dir):
    daemon = start_daemon(STATUS, setter_socket=str(shared_dir / "s.sock"), timeout=1)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(shared_dir / "s.sock"))
        started = time.monotonic()
        assert read_all(sock) == b"ERROR timed out waiting for the request\n"
        assert time.monotonic() - started < 4
    assert daemon.query(b"alice\r\n") == b"hi\r\n"


def test_client_without_a_daemon_exits_3(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ENTRY), "set", "--socket", str(tmp_path / "none.sock"), "hello"],
        capture_output=True,
        timeout=20,
    )
    assert result.returncode == 3
    assert b"not running" in result.stderr


def test_stale_socket_is_replaced_and_removed_at_stop(start_daemon, shared_dir):
    path = shared_dir / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(path))
    leftover.close()
    daemon = start_daemon(STATUS, setter_socket=str(path))
    daemon.setter_socket = str(path)
    assert set_status(daemon, "fresh").returncode == 0
    assert daemon.stop() == 0
    assert not path.exists()


def test_unavailable_socket_is_a_warning_not_a_failure(start_daemon, shared_dir):
    blocker = shared_dir / "file"
    blocker.write_text("in the way")
    daemon = start_daemon(STATUS, setter_socket=str(blocker / "setter.sock"))
    assert daemon.query(b"alice\r\n") == b"hi\r\n"
    assert "setter socket" in daemon.log() and "not available" in daemon.log()


def tcp_set(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def test_tcp_setter_is_loopback_only_and_speaks_the_tutorial_protocol(start_daemon, ports):
    setter_port = ports.take()
    daemon = start_daemon(STATUS, bind=None, setter_port=setter_port, setter_socket="")
    assert ("127.0.0.1", setter_port) in listening_sockets(daemon.process.pid)
    assert all(port != setter_port or host == "127.0.0.1" for host, port in listening_sockets(daemon.process.pid))
    assert tcp_set(setter_port, b"alice\r\nat the tutorial\r\n") == b"OK\r\n"
    daemon.wait_for_reply(b"alice\r\n", b"at the tutorial\r\n")
    assert tcp_set(setter_port, b"../x\r\nnope\r\n").startswith(b"ERROR not a valid user name")
    assert tcp_set(setter_port, b"alice\r\n\x1b[2J\r\n").startswith(b"ERROR control character")


@pytest.fixture
def readable_copy(tmp_path_factory):
    """The package where an unprivileged user can import it."""
    directory = Path(tempfile.mkdtemp(prefix="fingerd-client-"))
    shutil.copytree(ROOT / "fingerd", directory / "fingerd", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield directory
    shutil.rmtree(directory)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_an_ordinary_user_sets_only_their_own_status(setter, readable_copy):
    as_nobody = (
        "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
        "env", f"PYTHONPATH={readable_copy}", "/usr/bin/python3", "-m", "fingerd",
    )
    os.chmod(Path(setter.setter_socket).parent, 0o755)
    result = set_status(setter, "I", "am", "nobody", command=as_nobody)
    assert result.returncode == 0, result.stderr
    setter.wait_for_reply(b"nobody\r\n", b"I am nobody\r\n")
    result = set_status(setter, "--for", "alice", "hijacked", command=as_nobody)
    assert result.returncode == 1
    assert b"only root may set another user's status" in result.stderr
    assert setter.query(b"alice\r\n") == b"hi\r\n"
    assert "nobody (uid 65534) tried to set the status of alice" in setter.log()


def test_a_request_cut_short_is_not_stored(setter, start_daemon, ports):
    before = setter.status_file.read_bytes()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(setter.setter_socket)
        sock.sendall(b"SET 100 alice\nonly part of the stat")
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock).startswith(b"ERROR incomplete request")
    assert setter.status_file.read_bytes() == before


def test_tcp_request_without_its_status_line_is_not_stored(start_daemon, ports):
    setter_port = ports.take()
    daemon = start_daemon(STATUS, setter_port=setter_port)
    before = daemon.status_file.read_bytes()
    assert tcp_set(setter_port, b"bob\n").startswith(b"ERROR expected a name line and a status line")
    assert tcp_set(setter_port, b"bob\n\n").startswith(b"ERROR empty status")
    assert daemon.status_file.read_bytes() == before


def test_sigterm_mid_request_stores_nothing_and_exits_promptly(setter):
    before = setter.status_file.read_bytes()
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(setter.setter_socket)
    sock.sendall(b"SET 100 alice\nI am writing a long stat")
    time.sleep(0.3)
    started = time.monotonic()
    assert setter.stop() == 0
    assert time.monotonic() - started < 5
    sock.close()
    assert setter.status_file.read_bytes() == before


def test_a_status_too_big_for_the_client_is_refused_before_sending(setter):
    result = set_status(setter, stdin=b"x" * (10 << 20))
    assert result.returncode == 1
    assert b"status too long" in result.stderr


def test_an_empty_status_is_refused(setter):
    result = set_status(setter, "   ")
    assert result.returncode == 1
    assert b"--clear" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the file another owner needs root")
def test_the_status_file_keeps_its_owner_and_mode(setter):
    os.chown(setter.status_file, 1234, 5678)
    os.chmod(setter.status_file, 0o664)
    assert set_status(setter, "--for", "alice", "owned").returncode == 0
    info = setter.status_file.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (1234, 5678, 0o664)


def plant_lock(lock: Path, kind: str) -> None:
    """A lock file someone else put where the setters' lock goes."""
    if kind == "another user's file":
        lock.write_text("")
        os.chown(lock, 1234, 1234)
    elif kind == "symbolic link":
        target = lock.with_name("elsewhere")
        target.write_text("")
        lock.symlink_to(target)
    else:
        os.mkfifo(lock)


@pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's file needs root")
@pytest.mark.parametrize(
    "kind, message",
    [
        ("another user's file", b"uid 1234"),
        ("symbolic link", b"is a symbolic link"),
        ("named pipe", b"is not a regular file"),
    ],
)
def test_a_planted_lock_file_is_refused_at_once(setter, kind, message):
    lock = Path(str(setter.status_file) + ".lock")
    plant_lock(lock, kind)
    before = setter.status_file.read_bytes()
    with contextlib.ExitStack() as stack:
        if kind == "another user's file":
            holder = stack.enter_context(open(lock, "rb"))
            fcntl.flock(holder, fcntl.LOCK_EX)
        started = time.monotonic()
        result = set_status(setter, "--for", "alice", "blocked?")
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert b"lock file" in result.stderr and message in result.stderr and b"remove it" in result.stderr
    assert elapsed < 3
    assert setter.status_file.read_bytes() == before
    assert "setter: cannot update" in setter.wait_for_log(message.decode())
    lock.unlink()
    assert set_status(setter, "--for", "alice", "unblocked").returncode == 0
    setter.wait_for_reply(b"alice\r\n", b"unblocked\r\n")


@pytest.mark.parametrize("mode, planted", [(0o1777, "create {lock}"), (0o777, "replace {status} or create {lock}")])
def test_a_status_directory_everyone_may_write_is_a_warning(start_daemon, shared_dir, mode, planted):
    directory = shared_dir / "board"
    directory.mkdir()
    directory.chmod(mode)
    status = directory / "status"
    status.write_text("alice: hi\n")
    daemon = start_daemon(None, status_file=str(status), setter_socket=str(shared_dir / "setter.sock"))
    assert daemon.query(b"alice\r\n") == b"hi\r\n"
    warnings = [line for line in daemon.log().splitlines() if "writable by every user" in line]
    assert len(warnings) == 1
    assert "WARNING" in warnings[0]
    expected = planted.format(lock=f"{status}.lock", status=status)
    assert f"{directory} is writable by every user: anyone may {expected}," in warnings[0]


def test_no_such_warning_for_a_private_directory(setter):
    assert "writable by every user" not in setter.log()


def run_set(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {key: value for key, value in os.environ.items() if key != "FINGERD_SETTER_SOCKET"}
    return subprocess.run(
        [sys.executable, str(ENTRY), *args], capture_output=True, timeout=20, env={**environ, **(env or {})}
    )


@pytest.mark.parametrize("where", ["before", "after", "joined"])
def test_set_finds_the_socket_in_the_daemon_s_config_file(setter, tmp_path, where):
    """``-c FILE`` before or after ``set``, as the daemon is started with it: no --socket to tell every user."""
    config = tmp_path / "fingerd.conf"
    config.write_text(f"finger-port = 7979\nsetter-socket = {setter.setter_socket}\n")
    arguments = {
        "before": ("-c", str(config), "set", f"via -c {where}"),
        "after": ("set", "-c", str(config), f"via -c {where}"),
        "joined": (f"--config={config}", "set", f"via -c {where}"),
    }[where]
    result = run_set(*arguments)
    assert result.returncode == 0, result.stderr
    setter.wait_for_reply(b"root\r\n", f"via -c {where}\r\n".encode())


def test_socket_option_and_environment_come_before_the_config_file(setter, tmp_path):
    config = tmp_path / "fingerd.conf"
    config.write_text(f"setter-socket = {tmp_path / 'elsewhere.sock'}\n")
    by_environment = run_set("set", "-c", str(config), "from env", env={"FINGERD_SETTER_SOCKET": setter.setter_socket})
    assert by_environment.returncode == 0, by_environment.stderr
    by_option = run_set("set", "-c", str(config), "--socket", setter.setter_socket, "from option")
    assert by_option.returncode == 0, by_option.stderr
    setter.wait_for_reply(b"root\r\n", b"from option\r\n")


def test_a_config_without_a_setter_socket_is_said_so(tmp_path):
    config = tmp_path / "fingerd.conf"
    config.write_text("setter-socket =\n")
    result = run_set("set", "-c", str(config), "hello")
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        f"fingerd set: the daemon has no setter socket: setter-socket is empty in {config}"
    )
    missing = run_set("set", "-c", str(tmp_path / "none.conf"), "hello")
    assert missing.returncode == 2
    assert f"no config file {tmp_path / 'none.conf'}" in missing.stderr.decode()


def test_a_socket_nobody_answers_is_called_stale(tmp_path):
    """A socket file left by a daemon that died: connecting is refused, and the message says why."""
    path = tmp_path / "left.sock"
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(path))
    leftover.close()
    result = run_set("set", "--socket", str(path), "hello")
    assert result.returncode == 3
    assert result.stderr.decode().strip() == f"fingerd set: stale socket at {path}: the finger daemon is not running"


def test_python_m_fingerd_cli_is_the_fingerd_command(setter):
    result = subprocess.run(
        [sys.executable, "-m", "fingerd.cli", "set", "--socket", setter.setter_socket, "through -m"],
        capture_output=True, timeout=20, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    setter.wait_for_reply(b"root\r\n", b"through -m\r\n")
