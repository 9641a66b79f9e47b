"""One 10 MB status in the status file, against the real daemon.

Every reply and every listing copies what it shows, so an uncut 10 MB
status made each list 10 MB long and left the daemon about 40 MB larger
after answering it (measured: 42 MB after loading, 80 MB after one list).
Cut on loading and in the list, it costs the daemon nothing that stays.
"""

from __future__ import annotations

import http.client
import re
from pathlib import Path

from fingerd.users.statusfile import MAX_STATUS_BYTES

BIG = 10_000_000
OTHERS = b"alice: Writing the finger daemon\nbob: Out to lunch\n back at 2\n"
STATUS = b"alice: Writing the finger daemon\nbig: " + b"x" * BIG + b"\nbob: Out to lunch\n back at 2\n"
CUT_REPLY = b"x" * MAX_STATUS_BYTES + b"\r\n[truncated at 64 KiB]\r\n"
LIST_ASKS = 20
MIB = 1024 * 1024


def rss(pid: int) -> int:
    """Resident set size in bytes, from /proc/PID/status."""
    found = re.search(r"^VmRSS:\s+(\d+) kB$", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    assert found is not None
    return int(found.group(1)) * 1024


def get(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        connection.close()


def test_a_huge_status_is_cut_once_and_the_list_stays_small(start_daemon, ports):
    web_port = ports.take()
    daemon = start_daemon(STATUS, web_port=web_port)

    log = daemon.log()
    assert log.count("status of big longer than 64 KiB; cut here") == 1
    assert f"{daemon.status_file}: line 2: status of big longer than 64 KiB; cut here" in log
    assert "loaded 3 users" in log

    assert daemon.query(b"big\r\n") == CUT_REPLY
    assert daemon.query(b"/W big\r\n") == b"Login: big\r\nPlan:\r\n" + CUT_REPLY
    assert daemon.query(b"alice\r\n") == b"Writing the finger daemon\r\n"
    assert daemon.query(b"bob\r\n") == b"Out to lunch\r\nback at 2\r\n"

    listing = daemon.query(b"\r\n")
    assert len(listing) < 1024
    assert listing.split(b"\r\n") == [
        b"alice             Writing the finger daemon",
        b"big               " + b"x" * 197 + b"...",
        b"bob               Out to lunch",
        b"",
    ]
    assert daemon.query(b"/W\r\n") == listing

    index = get(web_port, "/")
    assert len(index) < 8192
    assert b"x" * 197 + b"...</span>" in index


def test_asking_for_the_list_leaves_the_daemon_no_larger(start_daemon):
    """The list is under 1 KiB, so asking for it may cost allocator noise, not megabytes.

    Measured on the uncut daemon: 42 MB after loading (the 10 MB status kept),
    80 MB after the first list and from then on.  Cut, the daemon with the
    10 MB line is as large as one without it (33 MB here), before and after.
    """
    reference = start_daemon(OTHERS)
    daemon = start_daemon(STATUS)
    pid = daemon.process.pid
    without = rss(reference.process.pid)
    before = rss(pid)
    for _ in range(LIST_ASKS):
        assert len(daemon.query(b"\r\n")) < 1024
    after = rss(pid)
    figures = f"without the big line {without / MIB:.1f} MiB, before {before / MIB:.1f}, after {after / MIB:.1f}"
    assert before - without < 5 * MIB, figures
    assert after - before < 5 * MIB, figures
    assert after < 80 * MIB, figures
