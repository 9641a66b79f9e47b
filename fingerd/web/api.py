"""The JSON API and XML-RPC: what the directory found in, bytes out.

A status travels as one string, its lines joined by ``\\n``, each line made
visible as the finger service shows it.  That matters twice over for
XML-RPC: XML 1.0 cannot carry most control characters at all, so a raw
status holding ESC would produce a document no client can parse.

XML-RPC keeps the Twisted tutorial's interface: ``getUser(name)`` returns
the status or the string ``No such user``, ``getUsers()`` the names.  A call
that cannot be answered gets one of a few faults, each with a fixed code
and text (the codes most XML-RPC servers use for these cases): the standard
dispatcher would put Python's exception into the fault string instead,
with parser positions, argument counts and whatever method name was sent.
The detail is logged at debug level.
"""

from __future__ import annotations

import inspect
import json
import logging
from datetime import datetime
from http import HTTPStatus
from xml.parsers.expat import ExpatError
from xmlrpc.client import Fault, dumps, loads
from xmlrpc.server import SimpleXMLRPCDispatcher

from fingerd.finger.answer import LOOKUP_FAILED, NO_SUCH_USER
from fingerd.render import visible
from fingerd.sources.base import Lines, Presence, Record, WhoIsOn
from fingerd.sources.directory import Directory, Listing, Lookup

log = logging.getLogger("fingerd.web")

NOT_XML = (-32700, "Malformed request: not well-formed XML")
NOT_A_CALL = (-32600, "Malformed request: not an XML-RPC method call")
NO_SUCH_METHOD = (-32601, "No such method")
WRONG_ARGUMENTS = (-32602, "Wrong number of arguments")
INTERNAL_ERROR = (-32603, "Internal error")
FAULTS = (NOT_XML, NOT_A_CALL, NO_SUCH_METHOD, WRONG_ARGUMENTS, INTERNAL_ERROR)


def status_text(status: Lines) -> str:
    """A status as one display string."""
    return "\n".join(visible(line) for line in status)


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8")


def users_json(listing: Listing) -> bytes:
    """``{"name": "status", ...}`` sorted by name."""
    return _json({name: status_text(status) for name, status in listing})


def user_json(record: Record) -> bytes:
    """``{"name": ..., "status": ...}``, and where the source knows (passwd) ``online``, ``idle_seconds``, ``since``."""
    value: dict[str, object] = {"name": record.name, "status": status_text(record.status)}
    if record.presence is not None:
        value.update(presence_fields(record.presence))
    return _json(value)


def online_json(on: WhoIsOn | None) -> bytes:
    """``{"name": {"online": true, "idle_seconds": ..., "since": ...}, ...}``: who is logged in now."""
    if on is None:
        return _json({})
    return _json({name: presence_fields(presence) for name, presence in on.presence})


def presence_fields(presence: Presence) -> dict[str, object]:
    """Online, idle seconds (None: unknown) and the login time in ISO 8601, in the daemon's time zone."""
    since = None
    if presence.since is not None:
        since = datetime.fromtimestamp(presence.since).astimezone().isoformat(timespec="seconds")
    return {"online": presence.online, "idle_seconds": presence.idle_seconds, "since": since}


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


def _fault(kind: tuple[int, str], detail: object) -> Fault:
    """The fault for ``kind``; ``detail``, which the client never sees, is logged at debug level."""
    code, text = kind
    log.debug("XML-RPC fault %d %s: %s", code, text, visible(str(detail))[:300])
    return Fault(code, text)


class FingerDispatcher(SimpleXMLRPCDispatcher):
    """Dispatches to the registered functions only, and answers every failure with a fixed fault."""

    def _marshaled_dispatch(self, data: bytes, dispatch_method: object = None, path: object = None) -> bytes:
        """A request body in, the response body out (the standard dispatcher's signature, which it replaces)."""
        outcome = self._call(data)
        if isinstance(outcome, Fault):
            response = dumps(outcome, allow_none=self.allow_none, encoding=self.encoding)
        else:
            response = dumps((outcome,), methodresponse=True, allow_none=self.allow_none, encoding=self.encoding)
        return response.encode(self.encoding, "xmlcharrefreplace")

    def _call(self, data: bytes) -> object:
        """The called function's result, or the fault that answers the call instead."""
        try:
            params, method = loads(data)
        except (ExpatError, LookupError, UnicodeError) as error:  # the parser's, or the encoding it was told
            return _fault(NOT_XML, error)
        except Exception as error:  # noqa: BLE001 - loads raises many kinds, a client's Fault among them
            return _fault(NOT_A_CALL, error)
        if method is None:
            return _fault(NOT_A_CALL, "no methodName")
        function = self.funcs.get(method)
        if function is None:
            return _fault(NO_SUCH_METHOD, repr(method))
        try:
            inspect.signature(function).bind(*params)
        except TypeError as error:
            return _fault(WRONG_ARGUMENTS, error)
        try:
            return function(*params)
        except Exception:  # a bug: logged with its traceback, and the client learns nothing of it
            log.exception("XML-RPC %s failed", method)
            return Fault(*INTERNAL_ERROR)


def make_dispatcher(directory: Directory) -> FingerDispatcher:
    """An XML-RPC dispatcher offering exactly `FingerRPC`'s two methods."""
    dispatcher = FingerDispatcher(allow_none=False, encoding="utf-8")
    rpc = FingerRPC(directory)
    dispatcher.register_function(rpc.getUser, "getUser")
    dispatcher.register_function(rpc.getUsers, "getUsers")
    return dispatcher
