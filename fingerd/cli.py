"""The ``fingerd`` command: the daemon, ``fingerd set`` and ``fingerd edit``, ``fingerd query``.

The dispatch comes before any import of the daemon, so ``fingerd set``,
``fingerd edit`` and ``fingerd query`` need nothing beyond the standard library.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["set"]:
        from fingerd.setter.client import main as set_status

        return set_status(args[1:])
    edit_args = _edit_arguments(args)
    if edit_args is not None:
        from fingerd.users.edit import main as edit_status_file

        return edit_status_file(edit_args)
    if args[:1] == ["query"]:
        from fingerd.client import main as query

        return query(args[1:])
    from fingerd.app import main as run_daemon

    return run_daemon(args)


def _edit_arguments(args: list[str]) -> list[str] | None:
    """The arguments of ``fingerd edit`` (a ``-c FILE`` given before it moved after it), or None.

    ``-c`` may come first because that is how the daemon is started
    (``fingerd -c /etc/fingerd.conf``); putting ``edit`` after it should edit
    that daemon's status file.
    """
    if args[:1] == ["edit"]:
        return args[1:]
    if args[:1] in (["-c"], ["--config"]) and args[2:3] == ["edit"]:
        return args[:2] + args[3:]
    joined = bool(args) and args[0] not in ("-c", "--config") and args[0].startswith(("-c", "--config="))
    if joined and args[1:2] == ["edit"]:
        return args[:1] + args[2:]
    return None
