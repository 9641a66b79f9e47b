"""``fingerd edit``, with real editors (``sed -i``, small scripts) and the real daemon.

The editor is whatever ``$VISUAL``/``$EDITOR`` names, so each test sets
``EDITOR`` to a program that edits the copy it is given, the way editors do
(``sed -i`` renames a new file over it).  Answers to questions are typed on
a pseudo-terminal, since without one ``fingerd edit`` asks nothing.
"""

from __future__ import annotations

import io
import os
import pty
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import ENTRY, ROOT, read_all
from fingerd.users.edit import EditSession

STATUS = "# the board\nalice: hi\n\n# bob below\nbob: out\n  to lunch\n"


@pytest.fixture
def daemon(start_daemon, tmp_path):
    socket_path = str(tmp_path / "setter.sock")
    daemon = start_daemon(STATUS, setter_socket=socket_path)
    daemon.setter_socket = socket_path
    return daemon


def editor_script(directory: Path, body: str) -> str:
    """An editor: a Python program given the copy's path as ``path`` (a Path); the EDITOR value that runs it."""
    script = directory / f"editor{len(list(directory.glob('editor*.py')))}.py"
    script.write_text("import sys\nfrom pathlib import Path\npath = Path(sys.argv[-1])\n" + body)
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def edit(daemon, *args: str, editor: str, stdin: bytes = b"", env: dict[str, str] | None = None, before: bool = False):
    """Run ``fingerd edit`` on the daemon's config, without a terminal."""
    config = ["-c", str(daemon.config)]
    words = [*config, "edit", *args] if before else ["edit", *config, *args]
    command = [sys.executable, str(ENTRY), *words]
    environment = {key: value for key, value in os.environ.items() if key not in ("VISUAL", "EDITOR")}
    environment.update(EDITOR=editor, TMPDIR=str(daemon.workdir), **(env or {}))
    return subprocess.run(command, cwd=ROOT, env=environment, input=stdin, capture_output=True, timeout=30)


def edit_on_terminal(daemon, answers: str, editor: str) -> tuple[int, str]:
    """Run ``fingerd edit`` on a pseudo-terminal, ``answers`` typed ahead; its exit status and stderr."""
    controller, terminal = pty.openpty()
    environment = {key: value for key, value in os.environ.items() if key not in ("VISUAL", "EDITOR")}
    process = subprocess.Popen(
        [sys.executable, str(ENTRY), "edit", "-c", str(daemon.config)],
        cwd=ROOT,
        env=dict(environment, EDITOR=editor, TMPDIR=str(daemon.workdir)),
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(terminal)
    try:
        os.write(controller, answers.encode())
        _, errors = process.communicate(timeout=30)
    finally:
        os.close(controller)
    return process.returncode, errors.decode()


def kept_copy(stderr: bytes | str) -> Path:
    """The copy ``fingerd edit`` says it kept."""
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    line = next(line for line in text.splitlines() if "your copy is kept in " in line)
    return Path(line.split("your copy is kept in ", 1)[1])


def test_an_edit_is_installed_and_served(daemon):
    result = edit(daemon, editor="sed -i s/^alice:.*/alice:\\ edited/")
    assert result.returncode == 0, result.stderr
    assert f"installed {daemon.status_file}".encode() in result.stdout
    assert daemon.status_file.read_text() == STATUS.replace("alice: hi", "alice: edited")
    daemon.wait_for_reply(b"alice\r\n", b"edited\r\n")
    assert not list(daemon.workdir.glob(".status.*")) and not list(daemon.workdir.glob("fingerd-edit.*"))


@pytest.mark.parametrize("before", [True, False], ids=["-c before edit", "-c after edit"])
def test_the_config_file_names_the_status_file(daemon, before):
    result = edit(daemon, editor="sed -i s/hi/hello/", before=before)
    assert result.returncode == 0, result.stderr
    daemon.wait_for_reply(b"alice\r\n", b"hello\r\n")


def test_visual_wins_over_editor_and_is_split_like_a_shell_would(daemon, tmp_path):
    visual = editor_script(tmp_path, "path.write_text(path.read_text() + sys.argv[1] + '\\n')\n")
    result = edit(daemon, editor="false", env={"VISUAL": f"{visual} 'carol: two words'"})
    assert result.returncode == 0, result.stderr
    daemon.wait_for_reply(b"carol\r\n", b"two words\r\n")


def test_nothing_changed_leaves_the_file_alone(daemon):
    before = daemon.status_file.stat()
    result = edit(daemon, editor="true")
    assert result.returncode == 0
    assert b"no changes" in result.stderr
    after = daemon.status_file.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_failing_editor_installs_nothing(daemon, tmp_path):
    editor = editor_script(tmp_path, "path.write_text('alice: half done\\n')\nsys.exit(3)\n")
    result = edit(daemon, editor=editor)
    assert result.returncode == 1
    assert b"exited with status 3" in result.stderr
    assert daemon.status_file.read_text() == STATUS
    assert kept_copy(result.stderr).read_text() == "alice: half done\n"


def test_problems_are_reported_by_line_and_refused_without_a_terminal(daemon, tmp_path):
    editor = editor_script(tmp_path, "path.write_text(path.read_text() + 'no colon here\\n x\\n')\n")
    result = edit(daemon, editor=editor)
    assert result.returncode == 1
    assert b"line 7: no colon: expected 'name: status'" in result.stderr
    assert b"line 8: continuation line with no user before it" in result.stderr
    assert daemon.status_file.read_text() == STATUS
    assert kept_copy(result.stderr).read_text() == STATUS + "no colon here\n x\n"


def test_force_installs_a_file_with_problems(daemon, tmp_path):
    editor = editor_script(tmp_path, "path.write_text(path.read_text() + 'no colon here\\ncarol: forced\\n')\n")
    result = edit(daemon, "--force", editor=editor)
    assert result.returncode == 0, result.stderr
    assert b"line 7: no colon" in result.stderr
    daemon.wait_for_reply(b"carol\r\n", b"forced\r\n")


def test_on_a_terminal_a_file_with_problems_can_be_edited_again(daemon, tmp_path):
    editor = editor_script(
        tmp_path,
        "runs = path.with_name('runs')\n"
        "first = not runs.exists()\n"
        "runs.write_text('x')\n"
        "text = path.read_text()\n"
        "fixed = text.replace('carol gone wrong', 'carol: fixed')\n"
        "path.write_text(text + 'carol gone wrong\\n' if first else fixed)\n",
    )
    status, errors = edit_on_terminal(daemon, "e\n", editor)
    assert status == 0, errors
    assert "line 7: no colon" in errors and "Install anyway (y), edit again (e) or quit (q)?" in errors
    daemon.wait_for_reply(b"carol\r\n", b"fixed\r\n")


def test_on_a_terminal_a_file_with_problems_can_be_installed_anyway(daemon, tmp_path):
    editor = editor_script(tmp_path, "path.write_text(path.read_text() + 'odd line\\ncarol: anyway\\n')\n")
    status, errors = edit_on_terminal(daemon, "y\n", editor)
    assert status == 0, errors
    daemon.wait_for_reply(b"carol\r\n", b"anyway\r\n")
    assert "odd line\n" in daemon.status_file.read_text()


def editor_racing_a_hand_edit(directory: Path, status_file: Path) -> str:
    """An editor during whose run someone else saves the status file (``sed -i``, no lock)."""
    return editor_script(
        directory,
        f"import subprocess\n"
        f"if not path.with_name('raced').exists():\n"
        f"    path.with_name('raced').write_text('x')\n"
        f"    subprocess.run(['sed', '-i', 's/^bob: out/bob: back/', {str(status_file)!r}], check=True)\n"
        f"path.write_text(path.read_text().replace('alice: hi', 'alice: from the editor'))\n",
    )


def test_a_save_made_while_the_editor_was_open_is_not_overwritten(daemon, tmp_path):
    result = edit(daemon, editor=editor_racing_a_hand_edit(tmp_path, daemon.status_file))
    assert result.returncode == 1
    assert b"changed while you were editing" in result.stderr
    assert b"-bob: out" in result.stderr and b"+bob: back" in result.stderr
    assert daemon.status_file.read_text() == STATUS.replace("bob: out", "bob: back")
    assert "alice: from the editor" in kept_copy(result.stderr).read_text()


def test_on_a_terminal_the_other_save_can_be_overwritten(daemon, tmp_path):
    status, errors = edit_on_terminal(daemon, "o\n", editor_racing_a_hand_edit(tmp_path, daemon.status_file))
    assert status == 0, errors
    assert "Overwrite their change (o), edit your copy again (e) or quit (q)?" in errors
    assert daemon.status_file.read_text() == STATUS.replace("alice: hi", "alice: from the editor")


def test_on_a_terminal_the_copy_can_be_edited_again_to_merge(daemon, tmp_path):
    status, errors = edit_on_terminal(daemon, "e\n", editor_racing_a_hand_edit(tmp_path, daemon.status_file))
    assert status == 0, errors
    assert daemon.status_file.read_text() == STATUS.replace("alice: hi", "alice: from the editor")


def test_a_setter_waits_while_the_editor_is_open_and_both_changes_land(daemon, tmp_path):
    """The editor writes when it started and when it was done (the monotonic clock is the system's)."""
    started, done = tmp_path / "editor-started", tmp_path / "editor-done"
    editor = editor_script(
        tmp_path,
        f"import time\nPath({str(started)!r}).write_text('')\ntime.sleep(1.0)\n"
        "path.write_text(path.read_text().replace('alice: hi', 'alice: edited'))\n"
        f"Path({str(done)!r}).write_text(repr(time.monotonic()))\n",
    )
    replies: list[tuple[bytes, float]] = []

    def set_status() -> None:
        deadline = time.monotonic() + 20
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(20)
            sock.connect(daemon.setter_socket)
            sock.sendall(b"SET 9 dave\nmeanwhile")
            sock.shutdown(socket.SHUT_WR)
            replies.append((read_all(sock), time.monotonic()))

    setter = threading.Thread(target=set_status)
    setter.start()
    result = edit(daemon, editor=editor)
    setter.join()
    assert result.returncode == 0, result.stderr
    [(reply, answered)] = replies
    editor_finished = float(done.read_text())
    assert reply.startswith(b"OK") and answered > editor_finished, "the setter did not wait for the editor"
    text = daemon.status_file.read_text()
    assert "alice: edited\n" in text and "dave: meanwhile\n" in text


HOLDER = """
import os, sys, time
status, ready, theirs = sys.argv[1], sys.argv[2], sys.argv[3].encode()
fd = os.open(status, os.O_WRONLY)
before = os.fstat(fd).st_ino
open(ready, "w").close()
deadline = time.monotonic() + 30
while os.stat(status).st_ino == before and time.monotonic() < deadline:
    time.sleep(0.001)
os.ftruncate(fd, 0)
os.pwrite(fd, theirs, 0)
os.close(fd)
"""
THEIRS = "# the board, rewritten in place\nalice: away\n"


def editor_with_a_rewrite_in_place(directory: Path, status_file: Path) -> str:
    """An editor during whose run a program opens the status file, and rewrites it in place once it is replaced."""
    ready = directory / "holder-ready"
    return editor_script(
        directory,
        "import subprocess, time\n"
        f"subprocess.Popen([sys.executable, '-c', {HOLDER!r}, {str(status_file)!r}, {str(ready)!r}, {THEIRS!r}])\n"
        f"while not Path({str(ready)!r}).exists():\n"
        "    time.sleep(0.01)\n"
        "path.write_text(path.read_text().replace('alice: hi', 'alice: from the editor'))\n",
    )


def test_a_save_in_place_found_after_the_install_is_put_back_and_the_copy_kept(
    tmp_path, monkeypatch, capsys, lease_refusal
):
    """The save lands in the replaced file, after the rename: theirs is put back, and the exit status says so.

    The writer sees the open descriptor (with a lease) and waits for it to
    close, before the rename and after it; the wait is long here, so the
    save lands while the writer still looks at the replaced file.
    """
    if lease_refusal:
        pytest.skip(f"needs kernel leases: {lease_refusal}")
    status_file = tmp_path / "status"
    status_file.write_text(STATUS)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    errors = io.StringIO()
    editor = editor_with_a_rewrite_in_place(tmp_path, status_file)
    session = EditSession(str(status_file), False, io.StringIO(), errors, {"EDITOR": editor})
    session.writer.writer_wait = 2.0
    session.writer.patience = 30.0
    assert session.run() == 1, errors.getvalue()
    said = errors.getvalue()
    assert status_file.read_text() == THEIRS, said
    assert "saved by someone else" in said and "+alice: away" in said
    assert "their save is put back" in said and "nothing installed" not in said
    assert "alice: from the editor" in kept_copy(said).read_text()
    assert "installed" not in capsys.readouterr().out


def edit_file(status_file: Path, editor: str, scratch: Path) -> subprocess.CompletedProcess:
    """Run ``fingerd edit --status-file``, without a terminal and without a daemon."""
    environment = {key: value for key, value in os.environ.items() if key not in ("VISUAL", "EDITOR")}
    environment.update(EDITOR=editor, TMPDIR=str(scratch))
    command = [sys.executable, str(ENTRY), "edit", "--status-file", str(status_file)]
    return subprocess.run(command, check=False, cwd=ROOT, env=environment, capture_output=True, timeout=30)


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is root's")
@pytest.mark.parametrize("kind", ["symbolic link", "named pipe"])
def test_as_root_a_status_file_that_is_a_link_or_not_a_file_is_refused(tmp_path, kind):
    outside = tmp_path / "etc-sudoers"
    outside.write_text("root ALL=(ALL) ALL\n")
    directory = tmp_path / "daemons-directory"
    directory.mkdir()
    status_file = directory / "status"
    if kind == "symbolic link":
        status_file.symlink_to(outside)
    else:
        os.mkfifo(status_file)
    result = edit_file(status_file, "sed -i s/root/mallory/", tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.decode().splitlines()
    assert line == f"fingerd edit: {status_file} is {'a symbolic link' if kind == 'symbolic link' else 'not'}" + (
        "; as root, fingerd edit does not follow it"
        if kind == "symbolic link"
        else " a regular file; as root, fingerd edit edits only a regular file"
    )
    assert outside.read_text() == "root ALL=(ALL) ALL\n"
    assert not list(tmp_path.glob("fingerd-edit.*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is root's")
def test_as_root_a_link_swapped_in_while_the_editor_is_open_is_not_followed(tmp_path):
    """The link's target holds the very bytes the editor was given, so only not following it keeps it safe."""
    outside = tmp_path / "etc-sudoers"
    outside.write_text("alice: hi\n")
    directory = tmp_path / "daemons-directory"
    directory.mkdir()
    status_file = directory / "status"
    status_file.write_text("alice: hi\n")
    editor = editor_script(
        tmp_path,
        f"import os\nos.unlink({str(status_file)!r})\nos.symlink({str(outside)!r}, {str(status_file)!r})\n"
        "path.write_text('alice: edited\\n')\n",
    )
    result = edit_file(status_file, editor, tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"{status_file} is a symbolic link; it is not followed".encode() in result.stderr
    assert outside.read_text() == "alice: hi\n"
    assert status_file.is_symlink()
    assert kept_copy(result.stderr).read_text() == "alice: edited\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's file needs root")
def test_a_planted_lock_file_is_refused(daemon):
    lock = Path(str(daemon.status_file) + ".lock")
    lock.write_text("")
    os.chown(lock, 1234, 1234)
    result = edit(daemon, editor="sed -i s/hi/x/")
    assert result.returncode == 1
    assert f"lock file {lock} belongs to ".encode() in result.stderr and b"uid 1234" in result.stderr
    assert daemon.status_file.read_text() == STATUS


@pytest.mark.skipif(os.geteuid() != 0, reason="the daemon drops to nobody only when started as root")
def test_a_lock_file_made_by_root_belongs_to_the_daemons_user(start_daemon, nobody_dir):
    (nobody_dir / "status").write_text(STATUS)
    (nobody_dir / "status").chmod(0o644)
    os.chown(nobody_dir / "status", 65534, 65534)
    daemon = start_daemon(
        None, workdir=nobody_dir, user="nobody", group="nogroup", setter_socket=str(nobody_dir / "setter.sock")
    )
    result = edit(daemon, editor="sed -i s/hi/edited/")
    assert result.returncode == 0, result.stderr
    lock = nobody_dir / "status.lock"
    assert (lock.stat().st_uid, lock.stat().st_mode & 0o777) == (65534, 0o600)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(20)
        sock.connect(str(nobody_dir / "setter.sock"))
        sock.sendall(b"SET 5 carol\nafter")
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock).startswith(b"OK"), daemon.log()
    daemon.wait_for_reply(b"carol\r\n", b"after\r\n")
    daemon.wait_for_reply(b"alice\r\n", b"edited\r\n")


STDLIB_ONLY = """
import runpy, sys
already = set(sys.modules)
sys.argv = [sys.argv[1], *sys.argv[2:]]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as done:
    code = done.code
loaded = {name.split(".")[0] for name in set(sys.modules) - already}
others = sorted(loaded - set(sys.stdlib_module_names) - {"fingerd"})
print("NOT STANDARD:", others, file=sys.stderr)
sys.exit(code)
"""


def test_it_imports_only_the_standard_library(daemon):
    result = subprocess.run(
        [sys.executable, "-c", STDLIB_ONLY, str(ENTRY), "edit", "-c", str(daemon.config)],
        cwd=ROOT,
        env=dict(os.environ, EDITOR="sed -i s/hi/std/", TMPDIR=str(daemon.workdir)),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert b"NOT STANDARD: []" in result.stderr


def test_its_default_status_file_is_the_daemons():
    from fingerd.config import Parser
    from fingerd.users.edit import DEFAULT_STATUS_FILE

    assert Parser().get_default("status_file") == DEFAULT_STATUS_FILE
