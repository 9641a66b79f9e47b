"""The access log's line text, its cache of lines and its timestamps, without a daemon.

The daemon-level tests (``test_finger_service``, ``test_daemon_logging``)
show the lines in real log files; these pin what the cache must not change:
a cached line is the line the query would have made, and the cache stays
bounded whatever clients send.
"""

from __future__ import annotations

import logging
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.daemon.access_log import LOGGED_BYTES, AccessLog, access_line
from fingerd.daemon.logs import Logs


@pytest.fixture(autouse=True)
def root_logger_restored():
    """`Logs` configures the root logger, as the daemon wants; put it back for the next test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_long_query_is_cut_and_its_size_given():
    head = b"a" * LOGGED_BYTES
    line = access_line("192.0.2.1", head, 70_000, "too-long")
    assert line == f'192.0.2.1 "{"a" * 120}...(70000 bytes read)" too-long'


def test_a_short_line_followed_by_much_more_input_says_how_much():
    line = access_line("192.0.2.1", b"alice\r\n" + b"x" * (LOGGED_BYTES - 7), 9000, "found")
    assert line == '192.0.2.1 "alice...(9000 bytes read)" found'


def test_mapped_ipv6_is_shown_as_ipv4_and_no_query_as_a_dash():
    assert access_line("::ffff:192.0.2.1", None, 0, "busy") == "192.0.2.1 - busy"


def logged(tmp_path, records, cache_entries=AccessLog.cache_entries):
    logs = Logs("info", False)
    path = tmp_path / "log"
    logs.use_file(str(path))
    access = AccessLog(logs)
    access.cache_entries = cache_entries
    for record in records:
        access.record(*record)
    access.flush()
    logs.close()
    return [line.partition(" INFO fingerd.access: ")[2] for line in path.read_text().splitlines()], access


def test_cached_lines_are_the_lines_each_query_makes(tmp_path):
    records = [("192.0.2.1", b"alice\r\n", 7, "found"), ("192.0.2.2", b"bob\r\n", 5, "no-such-user")] * 3
    lines, _ = logged(tmp_path, records)
    assert lines == [access_line(*record) for record in records]


def test_the_cache_stays_bounded(tmp_path):
    records = [("192.0.2.1", f"user{number}\r\n".encode(), 9, "found") for number in range(50)] * 2
    lines, access = logged(tmp_path, records, cache_entries=8)
    assert lines == [access_line(*record) for record in records]
    assert 0 < len(access._lines) <= 8


def test_a_timestamp_is_written_as_logging_writes_asctime():
    moment = 1_700_000_000.0456
    expected = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment)) + ",045"
    assert AccessLog(Logs("warning", False))._timestamp(moment) == expected


@given(st.lists(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False), max_size=20))
def test_a_reused_timestamp_is_the_one_made_afresh(moments):
    access = AccessLog(Logs("warning", False))
    for moment in sorted(moments):
        assert access._timestamp(moment) == AccessLog(Logs("warning", False))._timestamp(moment)
