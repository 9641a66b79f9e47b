"""``fingerd edit``: edit the status file the way ``vipw`` edits /etc/passwd.

It takes the lock the setters take (``<status-file>.lock``), so no
``fingerd set`` lands while the editor is open; copies the file into a
private temporary directory; runs ``$VISUAL``, else ``$EDITOR``, else ``vi``
on the copy (split into words as a shell would, but run without one);
checks the result with the daemon's own parser; and installs it through
`StatusFileWriter.apply`, the setters' path: a temporary file renamed over
the status file, lines appended by hand meanwhile carried over.

Nobody else's save is overwritten silently: if the file changed while the
editor was open (someone saved it without the lock), the change is shown
and the user chooses; without a terminal to ask on, nothing is installed.
A save that lands in the replaced file just after the rename (a program
that had the file open, rewriting it in place) is found only once the
user's copy is in place: there is nobody left to ask in time, so their save
is put back, as if it had come just after the install, and the user's copy
kept.  A copy that is not installed is kept, and its path printed, so no
work is lost.

Run as root, it refuses a status file that is a symbolic link or not a
regular file, and reads and renames over the path itself without following
links: whoever may write the status directory (the daemon's user) could
otherwise point it at ``/etc/sudoers`` and have root install the edit there.

Standard library only, like ``fingerd set``.  Exit status: 0 installed (or
nothing to install), 1 not installed, or someone else's save got in the
way of the install (what became of both is printed), 2 bad usage or a
status file root must not edit.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from fingerd.config_file import DEFAULT_CONFIG, ConfigFileError, setting
from fingerd.users.statusfile import DEFAULT_PATH, parse_status_file
from fingerd.users.writer import Change, SaveNotCarried, StatusFileWriter

DEFAULT_STATUS_FILE = DEFAULT_PATH
ENVIRONMENT_KEY = "FINGERD_STATUS_FILE"
NOT_INSTALLED, USAGE = 1, 2
MAX_DIFF_LINES = 40


class UsageError(Exception):
    """Something the user must change before asking again."""


class Changed(Exception):
    """The status file is no longer what the editor was given."""

    def __init__(self, found: bytes) -> None:
        super().__init__("the status file changed")
        self.found = found


def build_parser() -> argparse.ArgumentParser:
    """The options of ``fingerd edit``."""
    parser = argparse.ArgumentParser(
        prog="fingerd edit",
        description=(
            "Edit the status file with $VISUAL or $EDITOR (default: vi) under the setters' lock, "
            "check it, and install it."
        ),
        allow_abbrev=False,
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"the daemon's config file, for its status-file (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--status-file",
        metavar="PATH",
        help=f"the status file (default: ${ENVIRONMENT_KEY}, the config's, {DEFAULT_STATUS_FILE})",
    )
    parser.add_argument(
        "--force", action="store_true", help="without a terminal, install a file the parser finds problems in"
    )
    return parser


def find_status_file(options: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The status file, chosen the way the daemon chooses it: option, environment, config file, default."""
    try:
        value = setting("status-file", options.status_file, environ, options.config, unreadable_default_is_error=True)
    except ConfigFileError as error:
        raise UsageError(str(error)) from None
    return value or DEFAULT_STATUS_FILE


def editor_command(environ: Mapping[str, str]) -> list[str]:
    """``$VISUAL``, else ``$EDITOR``, else ``vi``, split into words as a shell would."""
    text = environ.get("VISUAL") or environ.get("EDITOR") or "vi"
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise UsageError(f"cannot split the editor command {text!r}: {error}") from None
    if not words:
        raise UsageError("the editor command is empty")
    return words


def problems_in(data: bytes) -> list[str]:
    """What the daemon would log about this file, one line each, in line order."""
    parsed = parse_status_file(data)
    found = [(problem.line, problem.message) for problem in parsed.problems]
    if parsed.invalid_utf8:
        for number, line in enumerate(data.split(b"\n"), start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                found.append((number, "bytes that are not UTF-8 (they would be served as U+FFFD)"))
    return [f"line {number}: {message}" for number, message in sorted(found)]


def install_over(base: bytes, edited: bytes) -> Change:
    """The change that installs ``edited``, only over the file the editor was given."""

    def install(current: bytes) -> bytes:
        if current == edited:
            return current
        if current != base:
            raise Changed(current)
        return edited

    return install


def refuse_for_root(path: str) -> None:
    """Raise UsageError if ``path`` is a symbolic link or not a regular file (a missing one is fine).

    Root must not follow a link that the owner of the directory may have
    planted, nor open a FIFO or a device in the status file's place.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as error:
        raise UsageError(f"cannot use {path} as the status file: {error.strerror or error}") from None
    if stat.S_ISLNK(info.st_mode):
        raise UsageError(f"{path} is a symbolic link; as root, fingerd edit does not follow it")
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path} is not a regular file; as root, fingerd edit edits only a regular file")


def differences(before: bytes, after: bytes, now: str = "now") -> list[str]:
    """A unified diff, cut at `MAX_DIFF_LINES`; ``now`` names the newer side."""
    lines = list(
        difflib.unified_diff(
            before.decode("utf-8", "replace").split("\n"),
            after.decode("utf-8", "replace").split("\n"),
            "as given to the editor",
            now,
            lineterm="",
        )
    )
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... ({len(lines) - MAX_DIFF_LINES} more lines)"]
    return lines


class EditSession:
    """One run of ``fingerd edit``: lock, copy, edit, check, install."""

    def __init__(self, path: str, force: bool, stdin: TextIO, stderr: TextIO, environ: Mapping[str, str]) -> None:
        """Raises UsageError for a bad editor command, or, as root, a status file that is a link or not a file."""
        self.path = os.path.abspath(path)
        self.force = force
        self.stdin = stdin
        self.stderr = stderr
        self.editor = editor_command(environ)
        as_root = os.geteuid() == 0
        if as_root:
            refuse_for_root(self.path)
        self.writer = StatusFileWriter(self.path, lock_owners=self._lock_owners(), follow_links=not as_root)
        self.scratch = Path(tempfile.mkdtemp(prefix="fingerd-edit."))
        self.copy = self.scratch / os.path.basename(self.path)
        self.original: bytes | None = None
        self.copy_reported = False

    def run(self) -> int:
        """Edit until installed or given up; the exit status."""
        installed = False
        try:
            self._create_lock_for_the_daemon()
            with self.writer.locked():
                installed = self._edit(self.writer.read())
        except OSError as error:
            self.say(error.strerror or str(error))
        if installed or not self._copy_is_new_work():
            shutil.rmtree(self.scratch, ignore_errors=True)
            return 0 if installed else NOT_INSTALLED
        if not self.copy_reported:
            self.say(f"nothing installed; your copy is kept in {self.copy}")
        return NOT_INSTALLED

    def _edit(self, base: bytes) -> bool:
        """The editing loop, under the lock; True once the file holds the user's version (or was left unchanged)."""
        self.original = base
        self.copy.write_bytes(base)
        while True:
            if not self._run_editor():
                return False
            edited = self.copy.read_bytes()
            if edited == base:
                self.say(f"no changes; {self.path} left as it was")
                return True
            problems = problems_in(edited)
            for problem in problems:
                self.say(problem)
            if problems:
                answer = self.ask("Install anyway (y), edit again (e) or quit (q)?", "yeq", "y" if self.force else "q")
                if answer == "e":
                    continue
                if answer == "q":
                    return False
            outcome = self._install(base, edited)
            if not isinstance(outcome, bytes):
                return outcome
            base = outcome

    def _install(self, base: bytes, edited: bytes) -> bool | bytes:
        """Install ``edited`` over ``base``; True when done, False to give up, or the new base to edit again on."""
        while True:
            try:
                self.writer.apply(install_over(base, edited))
            except SaveNotCarried as late:
                self._put_back(base, late)
                return False
            except Changed as changed:
                self.say(f"{self.path} changed while you were editing (saved by someone who did not take the lock):")
                for line in differences(base, changed.found):
                    self.say(f"  {line}")
                answer = self.ask("Overwrite their change (o), edit your copy again (e) or quit (q)?", "oeq", "q")
                if answer == "q":
                    return False
                if answer == "e":
                    return changed.found
                base = changed.found
                continue
            print(f"installed {self.path}")
            return True

    def _put_back(self, base: bytes, late: SaveNotCarried) -> None:
        """Someone's save landed in the file just replaced: put it back, keep the user's copy, and say so.

        Their save came last, and only now, after the rename, is it seen:
        the user can no longer be asked before it is overwritten, so it
        wins, as it would have had it come a moment after the install.
        """
        self.copy_reported = True
        self.say(f"{self.path} was saved by someone else (in place, without the lock) as your copy was installed:")
        for line in differences(base, late.saved, "their save"):
            self.say(f"  {line}")
        try:
            self.writer.apply(late.put_back)
            now = self.writer.read()
        except OSError as error:
            theirs = self._keep_theirs(late.saved)
            self.say(f"your copy is installed; their save could not be put back ({error.strerror or error})")
            self.say(f"their save was not merged; it is kept in {theirs}")
            return
        if now.startswith(late.saved):
            self.say(f"their save is put back, so your copy is not installed; your copy is kept in {self.copy}")
            return
        theirs = self._keep_theirs(late.saved)
        self.say(f"{self.path} was saved again since, and is left as it is; their first save is kept in {theirs}")
        self.say(f"your copy is not installed; your copy is kept in {self.copy}")

    def _keep_theirs(self, saved: bytes) -> Path:
        """Write someone else's save beside the user's copy; its path."""
        theirs = self.scratch / f"{self.copy.name}.their-save"
        theirs.write_bytes(saved)
        return theirs

    def _copy_is_new_work(self) -> bool:
        """Does the copy hold edits that are not in the status file?"""
        try:
            return self.copy.read_bytes() != self.original
        except OSError:
            return False

    def _run_editor(self) -> bool:
        """Run the editor on the copy; False (said why) if it could not run or failed.

        While it runs, Ctrl-C and Ctrl-\\ belong to the editor: here they
        are ignored, so they cannot end this program and leave the editor
        without its terminal.  They are ignored only after the editor has
        started, so it gets the usual handling.
        """
        try:
            process = subprocess.Popen([*self.editor, str(self.copy)])
        except OSError as error:
            self.say(f"cannot run the editor {self.editor[0]!r}: {error.strerror or error}")
            return False
        previous = {number: signal.signal(number, signal.SIG_IGN) for number in (signal.SIGINT, signal.SIGQUIT)}
        try:
            status = process.wait()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
        if status != 0:
            self.say(f"the editor {self.editor[0]!r} exited with status {status}")
            return False
        return True

    def ask(self, question: str, choices: str, unattended: str) -> str:
        """One of ``choices`` from the user; ``unattended`` when standard input is not a terminal (or ends)."""
        if not self.stdin.isatty():
            return unattended
        while True:
            self.stderr.write(f"{question} ")
            self.stderr.flush()
            try:
                answer = self.stdin.readline()
            except KeyboardInterrupt:
                self.stderr.write("\n")
                return "q"
            if not answer:
                return "q"
            if answer.strip().lower()[:1] in tuple(choices):
                return answer.strip().lower()[:1]

    def say(self, message: str) -> None:
        print(f"fingerd edit: {message}", file=self.stderr)

    def _lock_owners(self) -> set[int]:
        """Who may own the lock file: this user, root, and the owner of the status file or its directory.

        The daemon's user owns those (docs/install.md, "Directories the daemon's user must own"), and the daemon
        makes the lock file as that user.
        """
        owners = {os.geteuid(), 0}
        for path in (os.path.dirname(self.path), self.path):
            try:
                owners.add(os.stat(path).st_uid)
            except OSError:
                pass
        return owners

    def _create_lock_for_the_daemon(self) -> None:
        """As root, make a missing lock file belong to the directory's owner, the daemon's user.

        A lock file made by root with mode 0600 could not be opened by the
        daemon after it dropped root, and every later ``fingerd set`` would
        fail.
        """
        if os.geteuid() != 0:
            return
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.writer.lock_path, flags, 0o600)
        except FileExistsError:
            return
        try:
            owner = os.stat(os.path.dirname(self.writer.lock_path))
            os.fchown(fd, owner.st_uid, owner.st_gid)
        finally:
            os.close(fd)


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    try:
        path = find_status_file(options, os.environ)
        session = EditSession(path, options.force, sys.stdin, sys.stderr, os.environ)
    except UsageError as error:
        print(f"fingerd edit: {error}", file=sys.stderr)
        return USAGE
    return session.run()
