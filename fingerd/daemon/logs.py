"""Logging to stderr, a file or syslog, with a file reopened on SIGHUP.

One access line per query goes to the ``fingerd.access`` logger at INFO;
everything else to ``fingerd.*``.  Under systemd (``JOURNAL_STREAM`` set)
stderr lines carry no timestamp, because the journal adds its own.

With ``--no-log-peers`` client addresses are written as ``-``.  Every
address the services log is a `PeerAddress` passed as a logging argument,
so one filter on the handler can blank them all without the services
knowing; the access log, which writes its own lines, asks `log_peers`.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"
SYSLOG_FORMAT = "fingerd[%(process)d]: %(levelname)s %(name)s: %(message)s"
SYSLOG_SOCKET = "/dev/log"


class PeerAddress(str):
    """A client's address as logged; `Logs` blanks it when peers are not to be logged."""


class HidePeers(logging.Filter):
    """Replaces every `PeerAddress` argument of a record with ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(arg, PeerAddress) for arg in args):
            record.args = tuple("-" if isinstance(arg, PeerAddress) else arg for arg in args)
        return True


class ReopeningFileHandler(logging.FileHandler):
    """A file handler that can reopen its file after logrotate renames it."""

    def reopen(self) -> None:
        """Open the path afresh; on failure keep writing to the old file."""
        fresh = self._open()
        self.acquire()
        try:
            old, self.stream = self.stream, fresh
        finally:
            self.release()
        if old is not None:
            old.close()


class Logs:
    """The daemon's log handler.

    Logging starts on stderr (or syslog).  A `--log-file` is opened by
    `use_file` only after the privilege drop: a file created by root in a
    directory the daemon's user owns could be a symlink planted by that
    user, and the daemon must be able to reopen it on SIGHUP anyway.
    """

    def __init__(self, level: str, syslog: bool, log_peers: bool = True) -> None:
        self.log_peers = log_peers
        self.root = logging.getLogger()
        self.root.setLevel(level.upper())
        self.handler = self._install(self._syslog_handler() if syslog else self._stderr_handler())

    def _install(self, handler: logging.Handler) -> logging.Handler:
        if not self.log_peers:
            handler.addFilter(HidePeers())
        self.root.handlers[:] = [handler]
        return handler

    @staticmethod
    def _stderr_handler() -> logging.Handler:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(JOURNAL_FORMAT if os.environ.get("JOURNAL_STREAM") else FORMAT))
        return handler

    @staticmethod
    def _syslog_handler() -> logging.Handler:
        handler = logging.handlers.SysLogHandler(address=SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.setFormatter(logging.Formatter(SYSLOG_FORMAT))
        return handler

    def use_file(self, path: str) -> None:
        """Log to ``path`` from now on; OSError if it cannot be opened."""
        handler = ReopeningFileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT))
        old = self.handler
        self.handler = self._install(handler)
        old.close()

    def stream(self) -> object | None:
        """The text stream lines go to, or None when each line must be a record (syslog)."""
        return getattr(self.handler, "stream", None)

    def prefix_format(self) -> str:
        """How a line of ``fingerd.access`` at INFO starts, as a `str.format` pattern."""
        if type(self.handler) is logging.StreamHandler and os.environ.get("JOURNAL_STREAM"):
            return "INFO fingerd.access: {text}"
        return "{time} INFO fingerd.access: {text}"

    def write(self, text: str) -> None:
        """Write preformatted lines through the handler's own lock."""
        self.handler.acquire()
        try:
            stream = self.handler.stream  # type: ignore[attr-defined]
            stream.write(text)
            stream.flush()
        except OSError:
            self.handler.handleError(None)  # type: ignore[arg-type]
        finally:
            self.handler.release()

    @property
    def to_stderr(self) -> bool:
        return type(self.handler) is logging.StreamHandler

    def reopen(self) -> None:
        """Reopen the log file, if logging to one (SIGHUP)."""
        if not isinstance(self.handler, ReopeningFileHandler):
            return
        try:
            self.handler.reopen()
        except OSError as error:
            logging.getLogger("fingerd").error("cannot reopen log file: %s", error)

    def close(self) -> None:
        self.handler.close()
