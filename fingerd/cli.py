"""The ``fingerd`` command: the daemon, ``fingerd set`` for local users, ``fingerd query`` to ask a server.

The dispatch comes before any import of the daemon, so ``fingerd set`` and
``fingerd query`` need nothing beyond the standard library.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["set"]:
        from fingerd.setter.client import main as set_status

        return set_status(args[1:])
    if args[:1] == ["query"]:
        from fingerd.client import main as query

        return query(args[1:])
    from fingerd.app import main as run_daemon

    return run_daemon(args)
