"""The ``fingerd`` command: the daemon, ``fingerd set`` and ``fingerd edit``, ``fingerd query``.

Also ``python3 -m fingerd.cli``, the same command.

The dispatch comes before any import of the daemon, so ``fingerd set``,
``fingerd edit`` and ``fingerd query`` need nothing beyond the standard library.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


SUBCOMMANDS = ("set", "edit", "query")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = subcommand(args)
    if command == "set":
        from fingerd.setter.client import main as set_status

        return set_status(rest)
    if command == "edit":
        from fingerd.users.edit import main as edit_status_file

        return edit_status_file(rest)
    if command == "query":
        from fingerd.client import main as query

        return query(rest)
    from fingerd.app import main as run_daemon

    return run_daemon(args)


def subcommand(args: list[str]) -> tuple[str | None, list[str]]:
    """The subcommand and its arguments, a ``-c FILE`` given before it moved after it; (None, args) for the daemon.

    ``-c`` may come first because that is how the daemon is started
    (``fingerd -c /etc/fingerd.conf``); putting ``set``, ``edit`` or
    ``query`` after it should reach that daemon.
    """
    if args[:1] and args[0] in SUBCOMMANDS:
        return args[0], args[1:]
    if args[:1] in (["-c"], ["--config"]) and args[2:3] and args[2] in SUBCOMMANDS:
        return args[2], args[:2] + args[3:]
    joined = bool(args) and args[0] not in ("-c", "--config") and args[0].startswith(("-c", "--config="))
    if joined and args[1:2] and args[1] in SUBCOMMANDS:
        return args[1], args[:1] + args[2:]
    return None, args


if __name__ == "__main__":
    sys.exit(main())
