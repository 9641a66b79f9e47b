"""README's first command works as written, and writes nothing into the checkout.

The first code block under "## The two commands" is run exactly as it
stands, with ``sh -c``, in a fresh copy of the checkout: it makes a virtual
environment in /tmp/fingerd-try, installs fingerd there and runs the daemon
on etc/try.conf.  The test waits for finger on 127.0.0.1:7979 and the web
view on 127.0.0.1:8000 to answer, sets a status through the setter socket,
stops the command's process group, and checks that the copy holds the same
files as before, but for what pip's build leaves there and git ignores.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRY_DIR = Path("/tmp/fingerd-try")
PORTS = (7979, 8000)
INSTALL_AND_START = 300.0
# Copied from the checkout without these; after the command, these may appear.
BUILD_ARTIFACTS = ("build", "*.egg-info", "__pycache__")
NOT_COPIED = (".git", ".venv", ".pytest_cache", ".hypothesis", ".ruff_cache", "test-artifacts", *BUILD_ARTIFACTS)


def first_command() -> str:
    """The first code block under "## The two commands" in README.md."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## The two commands\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"^```\w*\n(?P<code>.*?)^```$|(?:^\n)(?P<indented>(?:^    .*\n)+)", section, re.M | re.S)
    assert match, "no code block under '## The two commands'"
    if match["code"] is not None:
        return match["code"].strip()
    return "\n".join(line[4:] for line in match["indented"].splitlines()).strip()


def snapshot(tree: Path) -> dict[str, str]:
    """Each file's path and a digest of its contents, leaving out build artifacts."""
    files = {}
    for path in sorted(tree.rglob("*")):
        relative = path.relative_to(tree)
        if any(part == "build" or part == "__pycache__" or part.endswith(".egg-info") for part in relative.parts):
            continue
        if path.is_symlink():
            files[str(relative)] = "symlink to " + os.readlink(path)
        elif path.is_file():
            files[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif not path.is_dir():
            files[str(relative)] = "special file"
    return files


def require_free(port: int) -> None:
    """Fail, naming the port, when something else has it: the README's command needs it."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            pytest.fail(f"127.0.0.1:{port} is in use ({error.strerror}); README's first command needs it: free it")


def finger(query: bytes) -> str | None:
    """The reply to ``query`` from 127.0.0.1:7979, or None while nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", 7979), timeout=5) as connection:
            connection.sendall(query + b"\r\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks).decode("utf-8", "replace")


def web(path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:8000{path}", timeout=5) as response:
        return response.status, response.read()


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the whole process group (the shell and the daemon), SIGKILL if it outstays 10 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture
def checkout_copy(tmp_path):
    """A fresh copy of the checkout, and /tmp/fingerd-try removed before and after."""
    shutil.rmtree(TRY_DIR, ignore_errors=True)
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT, copy, symlinks=True, ignore=shutil.ignore_patterns(*NOT_COPIED))
    yield copy
    shutil.rmtree(TRY_DIR, ignore_errors=True)


def test_the_first_command_is_the_one_in_the_readme():
    command = first_command()
    assert "/tmp/fingerd-try" in command and "etc/try.conf" in command
    assert command.count("\n") == 0, "one line, to copy and paste"


def test_first_command_runs_the_daemon_on_loopback_and_writes_nothing_into_the_checkout(checkout_copy, tmp_path):
    for port in PORTS:
        require_free(port)
    before = snapshot(checkout_copy)
    top_before = set(os.listdir(checkout_copy))
    output = tmp_path / "output"
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            ["sh", "-c", first_command()],
            cwd=checkout_copy,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + INSTALL_AND_START
        reply = None
        while time.monotonic() < deadline:
            reply = finger(b"carol")
            if reply is not None:
                break
            if process.poll() is not None:
                pytest.fail(f"the command exited with {process.returncode}:\n{output.read_text()[-4000:]}")
            time.sleep(0.2)
        else:
            pytest.fail(f"no answer on 127.0.0.1:7979 in {INSTALL_AND_START:.0f} s:\n{output.read_text()[-4000:]}")
        assert "Working on the new status page." in reply

        status, page = web("/")
        assert status == 200 and b"carol" in page
        status, body = web("/api/users")
        assert status == 200 and "carol" in json.loads(body)

        # fingerd set goes to the socket etc/try.conf names, and the status file in /tmp.
        setter = subprocess.run(
            [str(TRY_DIR / "bin" / "fingerd"), "-c", "etc/try.conf", "set", "trying the README"],
            cwd=checkout_copy,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert setter.returncode == 0, setter.stderr
        assert "trying the README" in (TRY_DIR / "status").read_text()

        # Loopback only: nothing on the wildcard addresses.
        if shutil.which("ss"):
            listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout.split()
            for port in PORTS:
                assert not {f"0.0.0.0:{port}", f"*:{port}", f"[::]:{port}"} & set(listening)
    finally:
        stop(process)

    after = snapshot(checkout_copy)
    assert {path for path in after if path not in before} == set(), "files created in the checkout"
    assert {path for path in before if path not in after} == set(), "files removed from the checkout"
    assert [path for path in before if before[path] != after[path]] == [], "files changed in the checkout"
    # What pip's build leaves in the tree is only what git ignores.
    built = set(os.listdir(checkout_copy)) - top_before
    assert built <= {"build", "fingerd.egg-info"}, built
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "build/" in ignored and "*.egg-info/" in ignored
