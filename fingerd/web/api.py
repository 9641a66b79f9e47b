"""The JSON API and XML-RPC: a user table in, bytes out.

A status travels as one string, its lines joined by ``\\n``, each line made
visible as the finger service shows it.  That matters twice over for
XML-RPC: XML 1.0 cannot carry most control characters at all, so a raw
status holding ESC would produce a document no client can parse.

XML-RPC keeps the Twisted tutorial's interface: ``getUser(name)`` returns
the status or the string ``No such user``, ``getUsers()`` the names.
"""

from __future__ import annotations

import json
from xmlrpc.server import SimpleXMLRPCDispatcher

from fingerd.finger.answer import NO_SUCH_USER
from fingerd.render import visible
from fingerd.users.statusfile import Status
from fingerd.users.table import Snapshot, UserTable


def status_text(status: Status) -> str:
    """A status as one display string."""
    return "\n".join(visible(line) for line in status)


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8")


def users_json(snapshot: Snapshot) -> bytes:
    """``{"name": "status", ...}`` sorted by name."""
    return _json({name: status_text(status) for name, status in sorted(snapshot.users.items())})


def user_json(name: str, status: Status) -> bytes:
    return _json({"name": name, "status": status_text(status)})


def not_found_json() -> bytes:
    return _json({"error": NO_SUCH_USER})


class FingerRPC:
    """The XML-RPC methods, answered from the current table."""

    def __init__(self, table: UserTable) -> None:
        self.table = table

    def getUser(self, name: str) -> str:  # noqa: N802 - the tutorial's name
        found = self.table.snapshot().find(name) if isinstance(name, str) else None
        return status_text(found[1]) if found else NO_SUCH_USER

    def getUsers(self) -> list[str]:  # noqa: N802 - the tutorial's name
        return sorted(self.table.snapshot().users)


def make_dispatcher(table: UserTable) -> SimpleXMLRPCDispatcher:
    """An XML-RPC dispatcher offering exactly `FingerRPC`'s two methods."""
    dispatcher = SimpleXMLRPCDispatcher(allow_none=False, encoding="utf-8")
    rpc = FingerRPC(table)
    dispatcher.register_function(rpc.getUser, "getUser")
    dispatcher.register_function(rpc.getUsers, "getUsers")
    return dispatcher
