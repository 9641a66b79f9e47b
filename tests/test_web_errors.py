"""What the web view answers to requests it cannot serve, against the real daemon.

Every response, however broken the request, carries the same headers as a
page; error bodies are fixed text; XML-RPC faults name the kind of mistake
and nothing of the code behind them.
"""

from __future__ import annotations

import http.client
import io
import re
import socket
import time
import xmlrpc.client
from http import HTTPStatus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import Daemon, read_all
from fingerd.sources.directory import Directory
from fingerd.sources.file import FileSource
from fingerd.users.table import UserTable
from fingerd.web import api
from fingerd.web.handler import SECURITY_HEADERS, busy_response

STATUS = "alice: Writing the finger daemon\nbob: Out to lunch\n"
EVERY_HEADER = {**dict(SECURITY_HEADERS), "Server": "fingerd"}
STATUS_LINE = re.compile(rb"HTTP/1\.0 ([1-5][0-9][0-9]) [A-Za-z][A-Za-z -]*")


@pytest.fixture(scope="module")
def web(tmp_path_factory, ports):
    """One daemon for the whole module: these tests only read."""
    port = ports.take()
    daemon = Daemon(tmp_path_factory.mktemp("web"), ports.take(), {"web-port": port, "log-level": "debug"})
    daemon.status_file.write_text(STATUS)
    daemon.web_port = port
    daemon.start()
    yield daemon
    daemon.stop()


def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, half-close, and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a response, checked strictly: a status line first, each header once."""
    head, separator, body = raw.partition(b"\r\n\r\n")
    assert separator, f"no end of headers in {raw[:200]!r}"
    status_line, *lines = head.split(b"\r\n")
    matched = STATUS_LINE.fullmatch(status_line)
    assert matched, f"not a status line: {status_line!r}"
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.decode("latin-1").partition(": ")
        assert colon and name not in headers, f"bad or repeated header line {line!r}"
        headers[name] = value
    return int(matched.group(1)), headers, body


def assert_every_header(headers: dict[str, str]) -> None:
    for name, value in EVERY_HEADER.items():
        assert headers.get(name) == value, f"{name}: {headers.get(name)!r}"


BROKEN_REQUESTS = [
    pytest.param(b"GET / HTTP/9.9\r\n\r\n", 505, id="unknown-version"),
    pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, id="http2-preface"),
    pytest.param(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\xff\r\n\r\n", 400, id="tls-hello-bytes"),
    pytest.param(b"\x00\x01\x02 /\xff\xfe\x1b[2J HTTP/1.0\r\n\r\n", 405, id="binary-method"),
    pytest.param(b"GET /" + b"a" * 20000 + b" HTTP/1.0\r\n\r\n", 414, id="over-long-line"),
    pytest.param(b"GET / HTTP/1.0\r\nX-Long: " + b"b" * 17000 + b"\r\n\r\n", 431, id="over-long-header"),
    pytest.param(b"GET / HTTP/1.0\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431, id="too-many-headers"),
    pytest.param(b"GET / x HTTP/0.9\r\n\r\n", 400, id="four-words-http09"),
    pytest.param(b"GET / HTTP/1.0 extra\r\n\r\n", 400, id="bad-version-word"),
    pytest.param(b"GET / HTTP/1.x\r\n\r\n", 400, id="non-digit-version"),
    pytest.param(b"FOO /\r\n\r\n", 400, id="versionless-non-get"),
    pytest.param(b"GET\r\n\r\n", 400, id="one-word"),
    pytest.param(b"DELETE / HTTP/1.0\r\n\r\n", 405, id="other-method"),
    pytest.param(b"POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\nx", 405, id="post-outside-rpc"),
    pytest.param(b"POST /RPC2 HTTP/1.0\r\n\r\n", 411, id="no-length"),
    pytest.param("POST /RPC2 HTTP/1.0\r\nContent-Length: \u0663\r\n\r\n".encode(), 411, id="non-ascii-length"),
    pytest.param(b"POST /RPC2 HTTP/1.0\r\nContent-Length: 99999999\r\n\r\n", 413, id="huge-body"),
]


@pytest.mark.parametrize(("data", "status"), BROKEN_REQUESTS)
def test_every_error_has_every_header_and_a_fixed_plain_body(web, data, status):
    code, headers, body = parse(exchange(web.web_port, data))
    assert code == status
    assert_every_header(headers)
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Connection"] == "close"
    assert int(headers["Content-Length"]) == len(body)
    assert body == f"{status} {HTTPStatus(status).phrase}\n".encode()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET /\r\n\r\n", id="no-version"),
        pytest.param(b"GET / HTTP/0.9\r\n\r\n", id="http09"),
        pytest.param(b"GET / HTTP/1.0\r\nno colon here\r\nX-Bin: \x00\xff\x1b\r\n\r\n", id="odd-header-lines"),
        pytest.param(b"GET /api/users/alice HTTP/1.1\r\nHost: x\r\n\r\n", id="http11"),
    ],
)
def test_answers_to_odd_but_readable_requests_are_http10_with_every_header(web, data):
    raw = exchange(web.web_port, data)
    assert raw.startswith(b"HTTP/1.0 200 OK\r\n")
    _, headers, body = parse(raw)
    assert_every_header(headers)
    assert int(headers["Content-Length"]) == len(body)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/", 200), ("GET", "/~nobody-here", 404), ("GET", "/api/users/nobody-here", 404),
     ("HEAD", "/~alice", 200), ("GET", "/static/live.js", 200), ("BREW", "/", 405)],
)
def test_every_page_has_every_header(web, method, path, status):
    code, headers, _ = parse(exchange(web.web_port, f"{method} {path} HTTP/1.0\r\n\r\n".encode()))
    assert code == status
    assert_every_header(headers)


def test_a_304_has_every_header(web):
    _, headers, _ = parse(exchange(web.web_port, b"GET /api/users HTTP/1.0\r\n\r\n"))
    raw = exchange(web.web_port, f"GET /api/users HTTP/1.0\r\nIf-None-Match: {headers['ETag']}\r\n\r\n".encode())
    code, headers, body = parse(raw)
    assert (code, body) == (304, b"")
    assert_every_header(headers)


def test_an_error_answers_a_head_request_without_a_body(web):
    code, headers, body = parse(exchange(web.web_port, b"HEAD / HTTP/1.0\r\n" + b"X: y\r\n" * 101 + b"\r\n"))
    assert (code, body) == (431, b"")
    assert_every_header(headers)


def test_nothing_of_the_request_comes_back_in_an_error(web):
    marker = b"<b>MARKER</b>"
    for data in (marker + b" / HTTP/9.9\r\n\r\n", b"GET " + marker + b"\r\n\r\n", b"GET / " + marker + b"\r\n\r\n"):
        raw = exchange(web.web_port, data)
        assert b"MARKER" not in raw and b"9.9" not in raw
    assert "Traceback" not in web.log()


def test_the_detail_of_an_error_goes_to_the_debug_log(web):
    exchange(web.web_port, b"GET / HTTP/7.3\r\n\r\n")
    log = web.wait_for_log("505 Invalid HTTP version (7.3)")
    assert '"GET / HTTP/7.3" 505' in log


# -- the acceptor's 503 ----------------------------------------------


class _Bytes:
    """Just enough of a socket for `http.client.HTTPResponse` to read from memory."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.data)


def test_busy_response_is_a_whole_503_with_every_header():
    raw = busy_response()
    code, headers, body = parse(raw)
    assert code == 503
    assert raw.startswith(b"HTTP/1.0 503 Service Unavailable\r\n")
    assert_every_header(headers)
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Connection"] == "close"
    assert body == b"Server busy, try again later\n"
    assert int(headers["Content-Length"]) == len(body)
    response = http.client.HTTPResponse(_Bytes(raw))  # type: ignore[arg-type]
    response.begin()
    assert (response.status, response.read()) == (503, body)


def test_busy_response_has_the_same_headers_as_a_handler_error(web):
    _, error_headers, _ = parse(exchange(web.web_port, b"GET / HTTP/9.9\r\n\r\n"))
    _, busy_headers, _ = parse(busy_response())
    del error_headers["Date"]
    assert error_headers.keys() == busy_headers.keys()
    assert {name: busy_headers[name] for name in EVERY_HEADER} == {name: error_headers[name] for name in EVERY_HEADER}


# -- XML-RPC faults --------------------------------------------------

FIXED_FAULTS = {code: text for code, text in api.FAULTS}
INTERNALS = ("line", "column", "token", "positional", "required", "supported", "<class", "Exception", "Traceback")


def fault_of(web, body: bytes) -> xmlrpc.client.Fault:
    """POST ``body`` to /RPC2 and return the fault it is answered with."""
    raw = exchange(web.web_port, b"POST /RPC2 HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    code, headers, reply = parse(raw)
    assert code == 200
    assert_every_header(headers)
    with pytest.raises(xmlrpc.client.Fault) as raised:
        xmlrpc.client.loads(reply)
    return raised.value


def assert_fixed(fault: xmlrpc.client.Fault, expected: tuple[int, str]) -> None:
    assert (fault.faultCode, fault.faultString) == expected
    assert not any(word in fault.faultString for word in INTERNALS)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda proxy: proxy.noSuchMethod(), api.NO_SUCH_METHOD),
        (lambda proxy: proxy.getUser.__globals__(), api.NO_SUCH_METHOD),
        (lambda proxy: proxy.system.listMethods(), api.NO_SUCH_METHOD),
        (lambda proxy: proxy._dispatch("getUser", ["alice"]), api.NO_SUCH_METHOD),
        (lambda proxy: proxy.getUser(), api.WRONG_ARGUMENTS),
        (lambda proxy: proxy.getUser("alice", "bob"), api.WRONG_ARGUMENTS),
        (lambda proxy: proxy.getUsers("alice"), api.WRONG_ARGUMENTS),
    ],
    ids=["unknown", "dunder", "introspection", "private", "missing-arg", "extra-arg", "arg-to-getUsers"],
)
def test_xmlrpc_call_faults_are_fixed(web, call, expected):
    proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{web.web_port}/RPC2")
    with pytest.raises(xmlrpc.client.Fault) as raised:
        call(proxy)
    assert_fixed(raised.value, expected)
    assert proxy.getUser("bob") == "Out to lunch"


CALL = b"<?xml version='1.0'?><methodCall><methodName>getUser</methodName><params>%s</params></methodCall>"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<not xml", api.NOT_XML),
        (b"", api.NOT_XML),
        (b"\xff\xfe\x00<", api.NOT_XML),
        (b"<!DOCTYPE x [<!ENTITY a '1'><!ENTITY b '&a;&a;'>]><methodCall>&b;</methodCall>", api.NOT_A_CALL),
        (b"<?xml version='1.0' encoding='no-such-codec'?><methodCall/>", api.NOT_XML),
        (b"<methodResponse><params><param><value>x</value></param></params></methodResponse>", api.NOT_A_CALL),
        (xmlrpc.client.dumps(xmlrpc.client.Fault(7, "the client's own text")).encode(), api.NOT_A_CALL),
        (CALL % b"<param><value><int>not a number</int></value></param>", api.NOT_A_CALL),
        (CALL % b"<param><value><double>1e</double></value></param>", api.NOT_A_CALL),
        (CALL % (b"<param><value><string>a</string></value></param>" * 2), api.WRONG_ARGUMENTS),
        (b"<methodCall><methodName>getUser</methodName></methodCall>", api.WRONG_ARGUMENTS),
        (b"<methodCall><methodName>\xc3\xa9 &lt;b&gt;</methodName><params/></methodCall>", api.NO_SUCH_METHOD),
        (b"<methodCall><methodName>getUser\x1b[2J</methodName><params/></methodCall>", api.NOT_XML),
    ],
    ids=["broken", "empty", "binary", "entities", "bad-encoding", "a-response", "a-fault", "bad-int", "bad-double",
         "extra-arg", "no-params", "odd-name", "control-in-name"],
)
def test_xmlrpc_malformed_bodies_get_fixed_faults(web, body, expected):
    assert_fixed(fault_of(web, body), expected)


def billion_laughs() -> bytes:
    entities = "".join(
        f"<!ENTITY l{level} '" + f"&l{level - 1};" * 10 + "'>" if level else "<!ENTITY l0 'ha'>" for level in range(10)
    )
    return f"<?xml version='1.0'?><!DOCTYPE m [{entities}]><methodCall><methodName>&l9;</methodName></methodCall>".encode()


def test_xmlrpc_entity_expansion_is_refused_quickly(web):
    started = time.monotonic()
    assert_fixed(fault_of(web, billion_laughs()), api.NOT_XML)
    assert time.monotonic() - started < 3
    assert web.wait_for_log("amplification")


def test_xmlrpc_fault_details_go_to_the_debug_log_only(web):
    fault = fault_of(web, b"<methodCall><methodName>getUser</methodName></methodCall>")
    assert fault.faultString == api.WRONG_ARGUMENTS[1]
    log = web.wait_for_log("missing a required argument")
    assert "XML-RPC fault -32602 Wrong number of arguments" in log
    assert "Traceback" not in log


def test_xmlrpc_still_answers_after_faults(web):
    proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{web.web_port}/RPC2")
    assert proxy.getUser("alice") == "Writing the finger daemon"
    assert proxy.getUser(5) == "No such user"
    assert proxy.getUsers() == ["alice", "bob"]


def _directory() -> Directory:
    table = UserTable()
    table.replace({"alice": ("hi",)})
    return Directory([FileSource(table)], table)


DISPATCHER = api.make_dispatcher(_directory())


@given(st.binary(max_size=400) | st.text(max_size=200).map(lambda text: (CALL % text.encode())))
def test_any_body_gets_an_answer_or_a_fixed_fault(body):
    try:
        xmlrpc.client.loads(DISPATCHER._marshaled_dispatch(body))
    except xmlrpc.client.Fault as fault:
        assert FIXED_FAULTS.get(fault.faultCode) == fault.faultString
