"""One HTTP request: `http.server`'s handler with the routes and the limits.

Routes (everything else is 404; methods other than GET, HEAD and POST 405)::

    GET  /                       the user list (HTML)
    GET  /<name>, /~<name>       one user's page (HTML), 404 "No such user"
    GET  /api/users              {"name": "status", ...}
    GET  /api/users/<name>       {"name": ..., "status": ...}, 404 if unknown (passwd adds online, idle_seconds, since)
    GET  /api/online             {"name": {"online": ..., "idle_seconds": ..., "since": ...}, ...}: who is logged in
    GET  /static/style.css, /static/live.js
    GET  /healthz                200 "ok" while every service of the daemon is alive, else 503
    POST /RPC2                   XML-RPC getUser(name), getUsers()

No path reaches the filesystem: templates and static files were read at
start-up.  Request line and headers together may use `max_head_bytes`; an
XML-RPC body `max_body_bytes`.  Every response, errors and the acceptor's
503 included, carries the same headers: a restrictive
Content-Security-Policy, ``nosniff`` and the others in `SECURITY_HEADERS`,
and a Server header that names no version.  An error's body is fixed plain
text naming the status, never anything from the request.  JSON responses
carry an ETag made from their content, so the page's poller costs a 304
while nothing changes, whichever source the data came from.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from fingerd.listen import peer_text
from fingerd.proxy import forwarded_client
from fingerd.render import visible
from fingerd.web import api, pages

if TYPE_CHECKING:
    from fingerd.web.server import WebServer

access_log = logging.getLogger("fingerd.web")

SERVER = "fingerd"
"""The Server header: the name only, no version to fingerprint."""
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-cache"),
)
HTML = "text/html; charset=utf-8"
JSON = "application/json; charset=utf-8"
PLAIN = "text/plain; charset=utf-8"
BUSY_TEXT = "Server busy, try again later\n"
HEALTH_PATH = "/healthz"
STATIC_TYPES = {"style.css": "text/css; charset=utf-8", "live.js": "text/javascript; charset=utf-8"}


@dataclass(frozen=True)
class Response:
    status: HTTPStatus
    content_type: str
    body: bytes
    etag: str = ""


def json_response(status: HTTPStatus, body: bytes) -> Response:
    """A JSON response whose ETag is a digest of its body."""
    return Response(status, JSON, body, '"' + hashlib.blake2b(body, digest_size=8).hexdigest() + '"')


def error_body(status: HTTPStatus) -> bytes:
    """An error's whole body: the status and its standard phrase, nothing the client sent."""
    return f"{status.value} {status.phrase}\n".encode()


def busy_response() -> bytes:
    """The whole 503 the accepting thread sends, in one call, when every slot is taken.

    No handler runs for that connection, so nothing else would add the
    headers every other response carries: they are written here from the
    same list, in the form `WebHandler.send` writes them.
    """
    status = HTTPStatus.SERVICE_UNAVAILABLE
    body = BUSY_TEXT.encode()
    headers = (
        ("Server", SERVER),
        ("Content-Type", PLAIN),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *SECURITY_HEADERS,
    )
    head = f"HTTP/1.0 {status.value} {status.phrase}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (head + "\r\n").encode("latin-1") + body


class HeadBudget:
    """Wraps the request stream so the request line and headers stay small.

    `http.server` allows 64 KiB per line and 100 header lines; this caps
    their sum.  Past the budget ``readline`` returns nothing more, and the
    handler answers 414 or 431.
    """

    def __init__(self, stream, budget: int) -> None:
        self.stream = stream
        self.budget = budget
        self.left = budget

    @property
    def exceeded(self) -> bool:
        return self.left < 0

    def reset(self) -> None:
        self.left = self.budget

    def readline(self, size: int = -1) -> bytes:
        if self.left < 0:
            return b""
        limit = self.left + 1 if size < 0 else min(size, self.left + 1)
        line = self.stream.readline(limit)
        self.left -= len(line)
        return line

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def close(self) -> None:
        self.stream.close()


class WebHandler(BaseHTTPRequestHandler):
    """Answers one HTTP/1.0 request from the server's user table."""

    server: WebServer
    server_version = SERVER
    sys_version = ""
    max_head_bytes = 16 * 1024
    max_body_bytes = 64 * 1024
    allowed_methods = ("GET", "HEAD", "POST")

    def __init__(self, request: object, client_address: object, server: WebServer, follow_forwarded: bool = True) -> None:
        self.follow_forwarded = follow_forwarded
        super().__init__(request, client_address, server)  # type: ignore[arg-type]

    def version_string(self) -> str:
        """The Server header: the name only, no version to fingerprint."""
        return self.server_version

    def setup(self) -> None:
        self.timeout = self.server.settings.timeout
        super().setup()
        self.rfile = HeadBudget(self.rfile, self.max_head_bytes)  # type: ignore[assignment]
        self.allow = ""

    def handle_one_request(self) -> None:
        self.rfile.reset()  # type: ignore[attr-defined]
        super().handle_one_request()

    def parse_request(self) -> bool:
        if self.rfile.exceeded:  # type: ignore[attr-defined]
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return False
        if not super().parse_request():
            return False
        if self.rfile.exceeded:  # type: ignore[attr-defined]
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
            return False
        if self.command not in self.allowed_methods:
            self.allow = ", ".join(self.allowed_methods)
            self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)
            return False
        return self.admit_client()

    def admit_client(self) -> bool:
        """Take the client a trusted proxy names in ``X-Forwarded-For``, and count the connection against it.

        A connection from a trusted proxy was not counted when it was
        accepted (`BoundedThreadsMixIn.count_client`); this is where its
        client is known.  Past `--max-per-address`, the client is told 503.
        """
        proxies = self.server.proxies
        if not proxies:
            return True
        if self.follow_forwarded:
            forwarded_for = self.headers.get_all("X-Forwarded-For") or []
            self.client_address = forwarded_client(self.client_address, forwarded_for, proxies)
        if self.server.count_client(self.client_address):
            return True
        self.send(Response(HTTPStatus.SERVICE_UNAVAILABLE, PLAIN, BUSY_TEXT.encode()), with_body=self.command != "HEAD")
        return False

    # -- methods -------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send(self.route())

    def do_HEAD(self) -> None:  # noqa: N802
        self.send(self.route(), with_body=False)

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/RPC2":
            self.allow = "GET, HEAD"
            self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)
            return
        body = self.read_body()
        if body is None:
            return
        reply = self.server.rpc._marshaled_dispatch(body)
        self.send(Response(HTTPStatus.OK, "text/xml; charset=utf-8", reply))

    # -- routing -------------------------------------------------------

    def route(self) -> Response:
        """Map a GET path to a response; the path is text, never a file name."""
        path = unquote(urlsplit(self.path).path, errors="replace")
        directory = self.server.directory
        templates, host = self.server.templates, self.server.settings.host
        if path == "/":
            return Response(HTTPStatus.OK, HTML, pages.index_page(templates, host, directory.listing()))
        if path == HEALTH_PATH:
            if self.server.settings.healthy():
                return Response(HTTPStatus.OK, PLAIN, b"ok\n")
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, PLAIN, b"unavailable\n")
        if path == "/api/users":
            return json_response(HTTPStatus.OK, api.users_json(directory.listing()))
        if path == "/api/online":
            return json_response(HTTPStatus.OK, api.online_json(directory.who()))
        if path.startswith("/api/users/"):
            found = directory.lookup(path[len("/api/users/") :])
            if found.record is None:
                return json_response(api.missing_status(found), api.missing_json(found))
            return json_response(HTTPStatus.OK, api.user_json(found.record))
        if path.startswith("/static/") and path[len("/static/") :] in STATIC_TYPES:
            name = path[len("/static/") :]
            return Response(HTTPStatus.OK, STATIC_TYPES[name], templates.static(name))
        found = directory.lookup(path[1:].removeprefix("~"))
        if found.record is None:
            page = pages.failed_page if found.failed else pages.not_found_page
            return Response(api.missing_status(found), HTML, page(templates, host))
        return Response(HTTPStatus.OK, HTML, pages.user_page(templates, host, found.record.name, found.record.status))

    def read_body(self) -> bytes | None:
        """The request body, or None after answering 411 or 413."""
        length_text = (self.headers.get("Content-Length") or "").strip()
        if not re.fullmatch(r"[0-9]{1,12}", length_text, re.ASCII):
            self.send_error(HTTPStatus.LENGTH_REQUIRED)
            return None
        length = int(length_text)
        if length > self.max_body_bytes:
            self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return None
        return self.rfile.read(length)

    # -- sending -------------------------------------------------------

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer an error like any other response, with fixed plain text.

        `http.server`'s own error page puts the request line, quoted, into
        the reason phrase and an HTML body; here that detail goes to the
        debug log, and the client gets the standard phrase only.
        """
        status = HTTPStatus(code)
        if message or explain:
            self.log_message("%d %s: %s", status.value, message or "", explain or "")
        self.send(Response(status, PLAIN, error_body(status)), with_body=self.command != "HEAD")

    def send(self, response: Response, with_body: bool = True) -> None:
        """Write a whole response: every byte the handler sends goes through here.

        The answer is HTTP/1.0 with all its headers whatever version the
        request named: `http.server` writes no status line and no header
        at all for a request it takes for HTTP/0.9 (one without a version,
        or naming ``HTTP/0.9``), its errors included.
        """
        self.request_version = self.protocol_version
        if response.etag and response.etag == self.headers.get("If-None-Match"):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", response.etag)
            self.end_headers()
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if response.etag:
            self.send_header("ETag", response.etag)
        self.end_headers()
        if with_body:
            self.wfile.write(response.body)

    def end_headers(self) -> None:
        """Add the headers every response carries (`busy_response` writes the same)."""
        self.send_header("Connection", "close")
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        if self.allow:
            self.send_header("Allow", self.allow)
        super().end_headers()

    def log_request(self, code: object = "-", size: object = "-") -> None:
        """One access line per request; health checks, which come every few seconds, only at debug level."""
        status = code.value if isinstance(code, HTTPStatus) else code
        line = self.requestline[:200].replace("\\", "\\\\").replace('"', '\\"')
        level = logging.DEBUG if urlsplit(getattr(self, "path", "")).path == HEALTH_PATH else logging.INFO
        access_log.log(level, "%s \"%s\" %s", peer_text(self.client_address), visible(line), status)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        access_log.debug("%s %s", peer_text(self.client_address), visible(format % args))
