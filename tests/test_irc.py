"""The IRC bot against a real IRC server (Debian's ngircd) and a raw test client."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from fingerd.irc_bot import RateLimit, irc_line, status_reply
from fingerd.irc_server import parse_server
from fingerd.sources.directory import Directory, Lookup
from fingerd.sources.file import FileSource
from fingerd.users.table import UserTable

STATUS = (
    "alice: Writing the finger daemon\n"
    "bob: Out to lunch\n"
    "mallory: innocent\rQUIT :pwned \x1b[2J \x07\n"
    "verbose: " + "blah " * 1000 + "\n"
)
CHANNEL = "#tilde"


class IRCServerProcess:
    """ngircd on a loopback port, in the foreground, with a throwaway config."""

    def __init__(self, workdir, port: int) -> None:
        self.port = port
        self.config = workdir / "ngircd.conf"
        self.config.write_text(
            "[Global]\n\tName = irc.test\n\tInfo = test\n\tListen = 127.0.0.1\n"
            f"\tPorts = {port}\n\tMotdPhrase = hello\n\tServerUID = 65534\n\tServerGID = 65534\n"
            "[Limits]\n\tMaxNickLength = 30\n[Options]\n\tPAM = no\n\tIdent = no\n\tDNS = no\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("ngircd") or "/usr/sbin/ngircd"
        self.process = subprocess.Popen(
            [binary, "-n", "-f", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "ngircd did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class Client:
    """A minimal raw IRC client, independent of the library under test."""

    def __init__(self, port: int, nick: str) -> None:
        self.nick = nick
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :test client")
        self.wait_for(rf"^:\S+ 001 {nick} ")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def lines(self, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\r\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\r\n", 1)
                text = line.decode("utf-8", "replace")
                if text.startswith("PING "):
                    self.send("PONG " + text[5:])
                    continue
                yield text
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                return
            self.buffer += chunk

    def wait_for(self, pattern: str, timeout: float = 10) -> str:
        seen = []
        for line in self.lines(timeout):
            seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r} in {timeout}s; saw {seen[-10:]}")

    def ask(self, target: str, text: str) -> None:
        self.send(f"PRIVMSG {target} :{text}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def irc_server(tmp_path, ports):
    server = IRCServerProcess(tmp_path, ports.take())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clients():
    opened: list[Client] = []

    def connect(port: int, nick: str) -> Client:
        client = Client(port, nick)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


def start_bot(start_daemon, irc_server, **options):
    options = {"irc_server": f"127.0.0.1:{irc_server.port}", "irc_channel": f"[{CHANNEL}]", **options}
    return start_daemon(STATUS, **options)


def wait_for_bot(client: Client, nick: str = "fingerbot") -> None:
    """Ask until the bot answers: it is connected and registered."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        client.ask(nick, "alice")
        try:
            client.wait_for(rf":{re.escape(nick)}!\S+ PRIVMSG {client.nick} :Status of alice", timeout=1)
            return
        except AssertionError:
            continue
    raise AssertionError(f"{nick} never answered")


def test_private_questions(start_daemon, irc_server, clients):
    daemon = start_bot(start_daemon, irc_server)
    client = clients(irc_server.port, "asker")
    wait_for_bot(client)
    client.ask("fingerbot", "bob")
    client.wait_for(r"PRIVMSG asker :Status of bob: Out to lunch$")
    client.ask("fingerbot", "nobody-here")
    client.wait_for(r"PRIVMSG asker :Status of nobody-here: No such user$")
    client.ask("fingerbot", "../../etc/passwd")
    client.wait_for(r"PRIVMSG asker :Status of \.\./\.\./etc/passwd: No such user$")
    assert "IRC: registered as fingerbot" in daemon.log()


def test_channel_command(start_daemon, irc_server, clients):
    client = clients(irc_server.port, "chatter")
    client.send(f"JOIN {CHANNEL}")
    client.wait_for(rf"JOIN :?{CHANNEL}")
    start_bot(start_daemon, irc_server)
    client.wait_for(rf"^:fingerbot!\S+ JOIN :?{CHANNEL}", timeout=15)
    client.ask(CHANNEL, "!finger alice")
    client.wait_for(rf"PRIVMSG {CHANNEL} :Status of alice: Writing the finger daemon$")
    client.ask(CHANNEL, "just chatting about alice")
    with pytest.raises(AssertionError):
        client.wait_for(r"PRIVMSG .*Status of", timeout=1)


def test_hostile_statuses_stay_one_safe_line(start_daemon, irc_server, clients):
    start_bot(start_daemon, irc_server)
    client = clients(irc_server.port, "prober")
    wait_for_bot(client)
    client.ask("fingerbot", "mallory")
    line = client.wait_for(r"PRIVMSG prober :Status of mallory")
    assert line.endswith("innocent^MQUIT :pwned ^[[2J ^G")
    client.ask("fingerbot", "verbose")
    line = client.wait_for(r"PRIVMSG prober :Status of verbose")
    assert line.endswith("...")
    assert len(line.split(" :", 1)[1].encode()) <= 400
    client.ask("fingerbot", "bob")
    client.wait_for(r"Status of bob: Out to lunch")


def test_rate_limit_per_sender(start_daemon, irc_server, clients):
    daemon = start_bot(start_daemon, irc_server)
    client = clients(irc_server.port, "flooder")
    wait_for_bot(client)
    time.sleep(10)
    for _ in range(20):
        client.ask("fingerbot", "bob")
    answers = [line for line in client.lines(6) if "Status of bob" in line]
    assert 5 <= len(answers) < 20, answers
    assert "IRC: flooder is asking too fast; ignored" in daemon.log()
    other = clients(irc_server.port, "patient")
    other.ask("fingerbot", "bob")
    other.wait_for(r"PRIVMSG patient :Status of bob", timeout=10)


def test_nick_taken_picks_another(start_daemon, irc_server, clients):
    clients(irc_server.port, "fingerbot")
    start_bot(start_daemon, irc_server)
    client = clients(irc_server.port, "asker")
    wait_for_bot(client, nick="fingerbot_")


def test_bot_comes_back_after_the_server_restarts(start_daemon, irc_server, clients):
    daemon = start_bot(start_daemon, irc_server)
    client = clients(irc_server.port, "before")
    wait_for_bot(client)
    irc_server.stop()
    time.sleep(1.5)
    irc_server.start()
    client = clients(irc_server.port, "after")
    wait_for_bot(client)
    assert "IRC: disconnected" in daemon.log()
    assert daemon.query(b"alice\r\n") == b"Writing the finger daemon\r\n"


def test_quit_on_shutdown(start_daemon, irc_server, clients):
    client = clients(irc_server.port, "watcher")
    client.send(f"JOIN {CHANNEL}")
    client.wait_for(rf"JOIN :?{CHANNEL}")
    daemon = start_bot(start_daemon, irc_server)
    client.wait_for(rf"^:fingerbot!\S+ JOIN :?{CHANNEL}", timeout=15)
    daemon.signal(signal.SIGTERM)
    client.wait_for(r"^:fingerbot!\S+ QUIT :.*fingerd stopping")
    assert daemon.process.wait(5) == 0


def test_prompt_shutdown_while_the_server_is_unreachable(start_daemon, ports):
    daemon = start_daemon(STATUS, irc_server=f"127.0.0.1:{ports.take()}")
    time.sleep(1.5)
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.process.wait(5) == 0
    assert time.monotonic() - started < 5
    assert "IRC: cannot connect" in daemon.log()


def test_pure_parts():
    table = UserTable()
    table.replace({"alice": ("hi\x1b[1m", "second line"), "empty": ()})
    directory = Directory([FileSource(table)], table)
    for name, reply in [
        ("alice", "Status of alice: hi^[[1m"),
        ("ALICE", "Status of alice: hi^[[1m"),
        ("empty", "Status of empty:"),
        ("x\r\nQUIT", "Status of x^M^JQUIT: No such user"),
    ]:
        assert status_reply(name, directory.lookup(name)) == reply
    assert status_reply("bob", Lookup(None, ("web",))) == "Status of bob: Lookup failed, try again later"
    assert len(irc_line("é" * 500).encode()) <= 400
    assert irc_line("é" * 500).endswith("...")
    assert parse_server("irc.example.org") == parse_server("irc.example.org:6667")
    assert parse_server("[::1]:7000").port == 7000
    for bad in ("", "host:", "host:0", "[::1", "[::1]x", "host:99999"):
        with pytest.raises(ValueError):
            parse_server(bad)
    limit = RateLimit(burst=2, interval=10.0)
    assert [limit.allow("a", 0), limit.allow("a", 0), limit.allow("a", 0)] == [True, True, False]
    assert limit.allow("b", 0)
    assert limit.allow("a", 10.5)
