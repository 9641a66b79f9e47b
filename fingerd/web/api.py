"""The JSON API and XML-RPC: what the directory found in, bytes out.

A status travels as one string, its lines joined by ``\\n``, each line made
visible as the finger service shows it.  That matters twice over for
XML-RPC: XML 1.0 cannot carry most control characters at all, so a raw
status holding ESC would produce a document no client can parse.

XML-RPC keeps the Twisted tutorial's interface: ``getUser(name)`` returns
the status or the string ``No such user``, ``getUsers()`` the names.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from xmlrpc.server import SimpleXMLRPCDispatcher

from fingerd.finger.answer import LOOKUP_FAILED, NO_SUCH_USER
from fingerd.render import visible
from fingerd.sources.base import Lines, Record
from fingerd.sources.directory import Directory, Listing, Lookup


def status_text(status: Lines) -> str:
    """A status as one display string."""
    return "\n".join(visible(line) for line in status)


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8")


def users_json(listing: Listing) -> bytes:
    """``{"name": "status", ...}`` sorted by name."""
    return _json({name: status_text(status) for name, status in listing})


def user_json(record: Record) -> bytes:
    return _json({"name": record.name, "status": status_text(record.status)})


def missing_text(found: Lookup) -> str:
    """Why a lookup found nobody: no such user, or a source that failed."""
    return LOOKUP_FAILED if found.failed else NO_SUCH_USER


def missing_status(found: Lookup) -> HTTPStatus:
    """404 for nobody; 503 when a source failed, because asking again may work."""
    return HTTPStatus.SERVICE_UNAVAILABLE if found.failed else HTTPStatus.NOT_FOUND


def missing_json(found: Lookup) -> bytes:
    return _json({"error": missing_text(found)})


class FingerRPC:
    """The XML-RPC methods, answered through the directory."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def getUser(self, name: str) -> str:  # noqa: N802 - the tutorial's name
        if not isinstance(name, str):
            return NO_SUCH_USER
        found = self.directory.lookup(name)
        return missing_text(found) if found.record is None else status_text(found.record.status)

    def getUsers(self) -> list[str]:  # noqa: N802 - the tutorial's name
        return [name for name, _ in self.directory.listing()]


def make_dispatcher(directory: Directory) -> SimpleXMLRPCDispatcher:
    """An XML-RPC dispatcher offering exactly `FingerRPC`'s two methods."""
    dispatcher = SimpleXMLRPCDispatcher(allow_none=False, encoding="utf-8")
    rpc = FingerRPC(directory)
    dispatcher.register_function(rpc.getUser, "getUser")
    dispatcher.register_function(rpc.getUsers, "getUsers")
    return dispatcher
