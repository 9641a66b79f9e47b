"""Shared fixtures: free ports, a real daemon process, a raw finger client.

The daemon runs as a separate process (``python fingerd.py -c CONFIG``) on
loopback ports.  Readiness is taken from the daemon itself: the harness owns
a datagram socket, passes it as ``NOTIFY_SOCKET`` and waits for ``READY=1``,
so no test sleeps and guesses.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ROOT / "fingerd.py"
START_TIMEOUT = 15.0


class PortAllocator:
    """Hands out free loopback ports, never the same one twice in a run."""

    def __init__(self) -> None:
        self.given: set[int] = set()

    def take(self) -> int:
        for _ in range(100):
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                probe.bind(("::", 0))
                port = probe.getsockname()[1]
            if port not in self.given:
                self.given.add(port)
                return port
        raise RuntimeError("no free port found")


@contextlib.contextmanager
def in_zone(name: str) -> Iterator[None]:
    """The process's local time zone is ``name`` inside, and what it was afterwards."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.fixture
def utc() -> Iterator[None]:
    """The tests' own process in UTC, for times laid out by the daemon's code called directly."""
    with in_zone("UTC"):
        yield


@pytest.fixture(scope="session")
def ports() -> PortAllocator:
    return PortAllocator()


def finger(port: int, data: bytes, host: str = "127.0.0.1", half_close: bool = False, timeout: float = 10) -> bytes:
    """Send raw bytes to a finger port and read the reply to EOF."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket a process listens on, from /proc."""
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")}
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:
                continue
            host, port = fields[1].split(":")
            raw = bytes.fromhex(host)
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, words), int(port, 16)))
    return found


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds (descriptors closing meanwhile are skipped)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def established_peers(pid: int, port: int) -> set[tuple[str, int]]:
    """(address, port) of the far end of every established IPv4 TCP socket process ``pid`` holds on local ``port``."""
    inodes = socket_inodes(pid)
    peers = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if fields[3] != "01" or fields[9] not in inodes or local_port != port:
            continue
        host, remote_port = fields[2].split(":")
        peers.add((socket.inet_ntoa(bytes.fromhex(host)[::-1]), int(remote_port, 16)))
    return peers


def thread_identities(pid: int) -> list[dict[str, list[str]]]:
    """Uid, Gid and Groups of every thread of a process, from /proc/PID/task/*/status."""
    identities = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
        identities.append({key: fields[key].split() for key in ("Uid", "Gid", "Groups")})
    return identities


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


class Daemon:
    """One fingerd process started from a config file written by the test."""

    def __init__(
        self,
        workdir: Path,
        port: int,
        options: dict[str, object],
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        program: Sequence[str] = (sys.executable, str(ENTRY)),
    ):
        self.workdir = workdir
        self.program = list(program)
        self.port = port
        self.status_file = Path(str(options.get("status-file", workdir / "status")))
        self.config = workdir / "fingerd.conf"
        self.log_path = workdir / "stderr.log"
        settings: dict[str, object] = {
            "bind": "127.0.0.1",
            "finger-port": port,
            "status-file": self.status_file,
            "user": "root",
            "timeout": 5,
            "web-port": 0,
            "setter-socket": "",
        }
        settings.update(options)
        self.config.write_text("".join(f"{key} = {value}\n" for key, value in settings.items() if value is not None))
        self.env = dict(os.environ, **(env or {}))
        self.args = args
        self.process: subprocess.Popen | None = None
        self.notify: socket.socket | None = None

    def start(self, wait: bool = True) -> Daemon:
        notify_path = self.workdir / "notify.sock"
        notify_path.unlink(missing_ok=True)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(notify_path))
        notify_path.chmod(0o777)  # a daemon that has dropped root still reports, as under systemd
        env = dict(self.env, NOTIFY_SOCKET=str(notify_path))
        self.stderr = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [*self.program, "-c", str(self.config), *self.args], cwd=ROOT, env=env, stderr=self.stderr
        )
        if wait:
            self.wait_for("READY=1")
        return self

    def wait_for(self, state: str, timeout: float = START_TIMEOUT) -> list[str]:
        """Wait for a readiness message containing ``state``; return all seen."""
        assert self.notify is not None
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"daemon exited with {self.process.returncode}: {self.log()}")
            self.notify.settimeout(0.1)
            try:
                message = self.notify.recv(4096).decode()
            except socket.timeout:
                continue
            seen.extend(message.split("\n"))
            if state in message.split("\n"):
                return seen
        raise AssertionError(f"no {state} within {timeout}s; seen {seen}; log: {self.log()}")

    def query(self, data: bytes, **kwargs) -> bytes:
        return finger(self.port, data, **kwargs)

    def text(self, query: str) -> str:
        return self.query(query.encode() + b"\r\n").decode("utf-8")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_reply(self, query: bytes, expected: bytes, limit: float = 2.0) -> float:
        """Ask until ``query`` answers ``expected``; return how long that took."""
        started = time.monotonic()
        while (reply := self.query(query)) != expected:
            elapsed = time.monotonic() - started
            assert elapsed < limit, f"after {elapsed:.2f}s still {reply!r}, want {expected!r}"
            time.sleep(0.01)
        return time.monotonic() - started

    def wait_for_log(self, text: str, timeout: float = 3.0) -> str:
        """The log once it contains ``text`` (access lines are written in batches)."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()):
            assert time.monotonic() < deadline, f"{text!r} not logged within {timeout}s: {log[-2000:]}"
            time.sleep(0.05)
        return log

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def stop(self, timeout: float = 10) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.notify is not None:
            self.notify.close()
            self.notify = None
        if not self.stderr.closed:
            self.stderr.close()


@pytest.fixture
def start_daemon(tmp_path: Path, ports: PortAllocator):
    """Factory: ``start_daemon(status="alice: hi\\n", **options)`` returns a running Daemon.

    Option values may name the daemon's own directory as ``{workdir}``.
    """
    daemons: list[Daemon] = []

    def start(
        status: str | bytes | None = "",
        wait: bool = True,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        program: Sequence[str] = (sys.executable, str(ENTRY)),
        workdir: Path | None = None,
        **options,
    ):
        if workdir is None:
            workdir = tmp_path / f"daemon{len(daemons)}"
            workdir.mkdir()
        options = {
            key.replace("_", "-"): value.replace("{workdir}", str(workdir)) if isinstance(value, str) else value
            for key, value in options.items()
        }
        daemon = Daemon(workdir, ports.take(), options, env, args, program)
        if status is not None:
            data = status.encode() if isinstance(status, str) else status
            daemon.status_file.write_bytes(data)
        daemons.append(daemon)
        return daemon.start(wait)

    yield start
    for daemon in daemons:
        daemon.close()


@pytest.fixture
def shared_dir():
    """A directory every local user can reach (pytest's own are root's alone)."""
    with tempfile.TemporaryDirectory(prefix="fingerd-shared-") as name:
        path = Path(name)
        path.chmod(0o755)
        yield path


@pytest.fixture
def nobody_dir():
    """A directory owned by nobody (as docs/install.md asks of /var/lib/fingerd), outside pytest's root-only tree."""
    with tempfile.TemporaryDirectory(prefix="fingerd-nobody-") as name:
        path = Path(name)
        path.chmod(0o755)
        os.chown(path, 65534, 65534)
        yield path


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for localhost and 127.0.0.1, made with openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)
    return cert, key


def run_fingerd(*args: str, env: dict[str, str] | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    """Run ``python fingerd.py ARGS`` to completion (config checks, errors)."""
    return subprocess.run(
        [sys.executable, str(ENTRY), *args],
        cwd=ROOT,
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class OneShotServer:
    """A listening socket that answers one connection with fixed bytes, then closes it.

    With ``reply=None`` it never accepts and never answers: the kernel
    completes the handshake, and the client waits.  With ``keep_open`` the
    connection stays open after the reply until the test is done.
    """

    def __init__(self, reply: bytes | None, host: str = "127.0.0.1", keep_open: bool = False) -> None:
        self.reply = reply
        self.keep_open = keep_open
        self.done = threading.Event()
        self.received = b""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.sock.settimeout(20)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> OneShotServer:
        if self.reply is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()
        self.sock.close()
        if self.thread.is_alive():
            self.thread.join(20)

    def was_contacted(self) -> bool:
        """For a server that never answers: has anyone connected?  Never blocks."""
        self.sock.setblocking(False)
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(20)
            while b"\n" not in self.received:
                chunk = conn.recv(1024)
                if not chunk:
                    break
                self.received += chunk
            conn.sendall(self.reply)
            if self.keep_open:
                self.done.wait(30)


ACCOUNT_PREFIX = f"fdt{os.getpid() % 100000}"


class Accounts:
    """Creates real accounts (``useradd``) with homes under one directory, and removes them all."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.made: list[str] = []

    @staticmethod
    def possible() -> bool:
        return os.geteuid() == 0 and shutil.which("useradd") is not None

    @classmethod
    @contextlib.contextmanager
    def temporary(cls) -> Iterator[Accounts]:
        """Accounts with homes in a fresh directory every user can traverse; all removed afterwards."""
        base = Path(tempfile.mkdtemp(prefix="fingerd-homes-"))
        base.chmod(0o755)
        accounts = cls(base)
        try:
            yield accounts
        finally:
            accounts.remove_all()
            shutil.rmtree(base, ignore_errors=True)

    def add(self, suffix: str, gecos: str = "", shell: str = "/bin/sh", mode: int = 0o755) -> tuple[str, Path]:
        name = ACCOUNT_PREFIX + suffix
        home = self.base / name
        subprocess.run(
            ["useradd", "--create-home", "--home-dir", str(home), "--shell", shell, "--comment", gecos, name],
            check=True,
            capture_output=True,
        )
        self.made.append(name)
        home.chmod(mode)
        return name, home

    def remove_all(self) -> None:
        for name in self.made:
            subprocess.run(["userdel", name], capture_output=True)


def write_owned(home: Path, name: str, data: bytes, owner: str) -> Path:
    """A file in ``home`` owned by the account ``owner``, readable by all."""
    path = home / name
    path.write_bytes(data)
    entry = pwd.getpwnam(owner)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o644)
    return path


def leases_refused(directory: Path) -> str | None:
    """Why the kernel gives no read lease on a file in ``directory``, or None when it does."""
    if not hasattr(fcntl, "F_SETLEASE"):
        return "this platform has no F_SETLEASE"
    probe = directory / "lease-probe"
    probe.write_bytes(b"")
    fd = os.open(probe, os.O_RDONLY)
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    except OSError as error:
        return f"the filesystem of {directory} refuses read leases ({error.strerror})"
    finally:
        os.close(fd)
        probe.unlink()
    return None


@pytest.fixture(scope="session")
def lease_refusal(tmp_path_factory: pytest.TempPathFactory) -> str | None:
    """Probed once, on the filesystem the tests' files are on."""
    return leases_refused(tmp_path_factory.mktemp("lease-probe"))
