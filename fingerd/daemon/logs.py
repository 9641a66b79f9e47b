"""Logging to stderr, a file or syslog, with a file reopened on SIGHUP.

One access line per query goes to the ``fingerd.access`` logger at INFO;
everything else to ``fingerd.*``.  Under systemd (``JOURNAL_STREAM`` set)
stderr lines carry no timestamp, because the journal adds its own.
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
    """The daemon's log handler, chosen once from the options."""

    def __init__(self, log_file: str, level: str, syslog: bool) -> None:
        self.handler = self._make_handler(log_file, syslog)
        root = logging.getLogger()
        root.handlers[:] = [self.handler]
        root.setLevel(level.upper())

    @staticmethod
    def _make_handler(log_file: str, syslog: bool) -> logging.Handler:
        if log_file:
            handler: logging.Handler = ReopeningFileHandler(log_file, encoding="utf-8")
            handler.setFormatter(logging.Formatter(FORMAT))
        elif syslog:
            handler = logging.handlers.SysLogHandler(
                address=SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON
            )
            handler.setFormatter(logging.Formatter(SYSLOG_FORMAT))
        else:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(JOURNAL_FORMAT if os.environ.get("JOURNAL_STREAM") else FORMAT))
        return handler

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
