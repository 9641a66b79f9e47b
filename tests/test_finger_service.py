"""The finger service over real sockets, against a real daemon process."""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest

from conftest import finger, read_all

STATUS = """\
# a comment
alice: Writing the finger daemon
bob: Out to lunch
carol:
 first line of a plan
   indented art
"""

CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9\xaa-\xae]|\xe2\x81[\xa6-\xa9]")


def assert_clean(reply: bytes) -> None:
    """Every line ends in CRLF, the text is UTF-8 and holds no control bytes."""
    assert reply.endswith(b"\r\n")
    reply.decode("utf-8")
    assert b"\n" not in reply.replace(b"\r\n", b"")
    assert b"\r" not in reply.replace(b"\r\n", b"")
    assert not CONTROL.search(reply.replace(b"\r\n", b""))


@pytest.fixture
def daemon(start_daemon):
    return start_daemon(STATUS)


def test_known_user(daemon):
    assert daemon.query(b"alice\r\n") == b"Writing the finger daemon\r\n"


def test_bare_lf_ends_the_query(daemon):
    assert daemon.query(b"bob\n") == b"Out to lunch\r\n"


def test_unknown_user(daemon):
    assert daemon.query(b"nobody-here\r\n") == b"No such user\r\n"


def test_system_and_missing_accounts_answer_alike(daemon):
    replies = {daemon.query(name + b"\r\n") for name in (b"root", b"daemon", b"nobody", b"zz-missing")}
    assert replies == {b"No such user\r\n"}


def test_verbose_form_shows_the_whole_plan(daemon):
    reply = daemon.text("/W carol")
    assert reply == "Login: carol\r\nPlan:\r\nfirst line of a plan\r\n  indented art\r\n"


@pytest.mark.parametrize("query", [b"/W alice\r\n", b"/w alice\r\n", b"/Walice\r\n", b"  /W    alice  \r\n"])
def test_verbose_spellings(daemon, query):
    assert daemon.query(query) == b"Login: alice\r\nPlan:\r\nWriting the finger daemon\r\n"


def test_empty_query_lists_users(daemon):
    lines = daemon.query(b"\r\n").decode().split("\r\n")
    assert lines[-1] == ""
    assert [line.split()[0] for line in lines[:-1]] == ["alice", "bob", "carol"]
    assert "Writing the finger daemon" in lines[0]
    assert "first line of a plan" in lines[2]


def test_verbose_empty_query_lists_users(daemon):
    assert daemon.query(b"/W\r\n") == daemon.query(b"\r\n")


def test_list_denied(start_daemon):
    daemon = start_daemon(STATUS, list_users="false")
    assert daemon.query(b"\r\n") == b"Finger online user list denied\r\n"
    assert daemon.query(b"alice\r\n") == b"Writing the finger daemon\r\n"


def test_only_the_first_line_counts(daemon):
    assert daemon.query(b"alice\r\nbob\r\n") == b"Writing the finger daemon\r\n"


def test_query_without_line_end_is_answered_at_half_close(daemon):
    assert daemon.query(b"alice", half_close=True) == b"Writing the finger daemon\r\n"


def test_forwarding_refused_without_connecting(daemon, ports):
    target_port = ports.take()
    with socket.socket() as target:
        target.bind(("127.0.0.1", target_port))
        target.listen()
        target.settimeout(0.5)
        reply = daemon.text(f"alice@127.0.0.1:{target_port}")
        assert reply == "Finger forwarding service denied\r\n"
        with pytest.raises(socket.timeout):
            target.accept()
    daemon.wait_for_log("forward-denied")


def test_control_characters_never_sent(start_daemon):
    status = "eve: red \x1b[31malert\x1b[0m bell\x07 nul\x00 del\x7f c1\x85\x9b rtl\u202eevil lsep\u2028x\n"
    daemon = start_daemon(status.encode("utf-8") + b"mallory: bad \xff\xfe bytes\n")
    reply = daemon.query(b"eve\r\n")
    assert_clean(reply)
    assert reply == (
        b"red ^[[31malert^[[0m bell^G nul^@ del^? c1\\x85\\x9b rtl\\u202eevil lsep\\u2028x\r\n"
    )
    assert_clean(daemon.query(b"mallory\r\n"))
    assert_clean(daemon.query(b"\r\n"))


HOSTILE = [
    b"A" * 536 + b"\r\n",
    b"A" * 1024 + b"\r\n",
    b"A" * 1025 + b"\r\n",
    b"A" * 65536 + b"\r\n",
    b"A" * (1 << 20) + b"\r\n",
    b"alice\x00\r\n",
    b"\xff\xfe\xfd\r\n",
    b"-l\r\n",
    b"--help\r\n",
    b"|/bin/id\r\n",
    b";id\r\n",
    b"$(id)\r\n",
    b"`id`\r\n",
    b"../../etc/passwd\r\n",
    b"%n%s%x\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\xff\xf4\xff\xfd\x06\r\n",
    b"@@@@\r\n",
    b"alice" + b"@h" * 40 + b"\r\n",
    b"0\r\n",
    b".\r\n",
    b"*\r\n",
    b"root\r\n",
]


@pytest.mark.parametrize("query", HOSTILE, ids=lambda q: repr(q[:20]) + f"/{len(q)}")
def test_hostile_query_gets_a_reply_and_service_goes_on(daemon, query):
    reply = daemon.query(query)
    assert reply, "every query gets a reply"
    assert_clean(reply)
    assert reply in (
        b"No such user\r\n",
        b"Finger forwarding service denied\r\n",
        b"Query too long: at most 1024 bytes\r\n",
    )
    assert daemon.query(b"alice\r\n") == b"Writing the finger daemon\r\n"


@pytest.mark.parametrize("size", [1025, 65536, 1 << 20])
def test_long_line_without_newline_gets_an_error(daemon, size):
    assert daemon.query(b"B" * size) == b"Query too long: at most 1024 bytes\r\n"


def test_a_long_query_is_logged_cut_short_with_its_size(daemon):
    daemon.query(b"B" * 4000, half_close=True)
    log = daemon.wait_for_log("bytes read")
    assert re.search(r'127\.0\.0\.1 "B{120}\.\.\.\(4000 bytes read\)" too-long$', log, re.M), log


def test_long_line_without_newline_at_half_close(daemon):
    assert daemon.query(b"B" * 4000, half_close=True) == b"Query too long: at most 1024 bytes\r\n"


def test_line_of_exactly_the_limit_is_a_query(daemon):
    assert daemon.query(b"a" * 1024 + b"\r\n") == b"No such user\r\n"


def test_silent_client_times_out_with_a_reply(start_daemon):
    daemon = start_daemon(STATUS, timeout=1)
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"alice")
        reply = read_all(sock)
        waited = time.monotonic() - started
    assert reply == b"Timed out waiting for the query\r\n"
    assert 0.8 < waited < 4
    assert daemon.query(b"alice\r\n") == b"Writing the finger daemon\r\n"


def test_query_sent_in_pieces(daemon):
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        for piece in (b"/W ", b"al", b"ice", b"\r", b"\n"):
            sock.sendall(piece)
            time.sleep(0.05)
        assert read_all(sock) == b"Login: alice\r\nPlan:\r\nWriting the finger daemon\r\n"


def test_busy_reply_past_max_connections(start_daemon):
    daemon = start_daemon(STATUS, max_connections=3)
    holders = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(3)]
    try:
        for sock in holders:
            sock.sendall(b"ali")
        time.sleep(0.3)
        assert daemon.query(b"alice\r\n") == b"Server busy, try again later\r\n"
        holders[0].sendall(b"ce\r\n")
        assert read_all(holders[0]) == b"Writing the finger daemon\r\n"
        holders[0].close()
        deadline = time.monotonic() + 3
        while daemon.query(b"alice\r\n") != b"Writing the finger daemon\r\n":
            assert time.monotonic() < deadline, "a freed slot is used again"
            time.sleep(0.05)
    finally:
        for sock in holders:
            sock.close()
    daemon.wait_for_log(" - busy")


def test_many_concurrent_clients_all_answered(daemon):
    replies: list[bytes] = []
    lock = threading.Lock()

    def ask() -> None:
        for _ in range(25):
            reply = daemon.query(b"bob\r\n")
            with lock:
                replies.append(reply)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert replies == [b"Out to lunch\r\n"] * 200


def test_slow_reader_gets_the_whole_list(start_daemon):
    status = "".join(f"user{i}: status number {i} " + "x" * 60 + "\n" for i in range(30000))
    daemon = start_daemon(status)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", daemon.port))
        sock.sendall(b"\r\n")
        time.sleep(0.5)
        assert daemon.query(b"user7\r\n").startswith(b"status number 7 ")
        reply = read_all(sock)
    assert reply.count(b"\r\n") == 30000
    assert reply.startswith(b"user0 ")


def test_each_query_is_logged(daemon):
    daemon.query(b"alice\r\n")
    daemon.query(b"zz\x1b[2J\r\n")
    log = daemon.wait_for_log("no-such-user")
    assert re.search(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO fingerd\.access: 127\.0\.0\.1 "alice" found$', log, re.M)
    assert re.search(r'127\.0\.0\.1 "zz\^\[\[2J" no-such-user', log)
    assert "\x1b" not in log


def test_log_lines_cannot_be_forged(daemon):
    daemon.query(b'x" found 10.0.0.1 "root\\\r\n')
    daemon.wait_for_log('127.0.0.1 "x\\" found 10.0.0.1 \\"root\\\\" no-such-user')


def test_dual_stack_by_default(start_daemon):
    daemon = start_daemon(STATUS, bind=None)
    assert finger(daemon.port, b"alice\r\n", host="127.0.0.1") == b"Writing the finger daemon\r\n"
    assert finger(daemon.port, b"alice\r\n", host="::1") == b"Writing the finger daemon\r\n"
    daemon.wait_for_log('127.0.0.1 "alice" found')
    daemon.wait_for_log('::1 "alice" found')
