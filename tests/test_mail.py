"""Mail status from the spool file's times: each of finger's three answers, and what is never looked at.

The spool files are real temporary files whose access and modification
times are set with `os.utime`; `mail_lines` is also given made-up
``stat`` results, since it is pure.
"""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import in_zone
from fingerd.render import reply_bytes
from fingerd.sources.mail import NO_MAIL, is_spool_name, mail_lines, mail_status

NOON = 1606737600  # Mon Nov 30 12:00:00 2020 UTC
SECOND = 1_000_000_000


def spool(directory, login: str, data: bytes, read: float, received: float):
    """A spool file for ``login`` last read at ``read`` and last written at ``received`` (epoch seconds)."""
    path = directory / login
    path.write_bytes(data)
    os.utime(path, ns=(int(read * SECOND), int(received * SECOND)))
    return path


def made_up(size: int, read_ns: int, received_ns: int, mode: int = stat.S_IFREG | 0o600) -> os.stat_result:
    return os.stat_result(
        (mode, 1, 1, 1, 0, 0, size, read_ns // SECOND, received_ns // SECOND, 0),
        {"st_atime_ns": read_ns, "st_mtime_ns": received_ns},
    )


def test_no_spool_file_is_no_mail(tmp_path):
    assert mail_status(str(tmp_path), "alice") is None
    assert mail_lines(None) == [NO_MAIL] == ["No mail."]


def test_an_empty_spool_file_is_no_mail(tmp_path):
    spool(tmp_path, "alice", b"", NOON, NOON + 60)
    assert mail_lines(mail_status(str(tmp_path), "alice")) == ["No mail."]


def test_mail_that_came_after_the_last_read_is_new(tmp_path, utc):
    spool(tmp_path, "alice", b"From bob\n", NOON - 4020, NOON)
    assert mail_lines(mail_status(str(tmp_path), "alice")) == [
        "New mail received Mon Nov 30 12:00 2020 (UTC)",
        "     Unread since Mon Nov 30 10:53 2020 (UTC)",
    ]


def test_mail_read_after_it_came_was_read(tmp_path, utc):
    spool(tmp_path, "alice", b"From bob\n", NOON, NOON - 86400)
    assert mail_lines(mail_status(str(tmp_path), "alice")) == ["Mail last read Mon Nov 30 12:00 2020 (UTC)"]


def test_within_one_second_it_counts_as_read(utc):
    # finger compares whole seconds: written at .9, read at .1 of the same second
    status = made_up(10, NOON * SECOND + 100_000_000, NOON * SECOND + 900_000_000)
    assert mail_lines(status) == ["Mail last read Mon Nov 30 12:00 2020 (UTC)"]


def test_the_dates_are_in_the_local_zone(tmp_path):
    spool(tmp_path, "alice", b"x", NOON, NOON - 60)
    with in_zone("Europe/Paris"):
        assert mail_lines(mail_status(str(tmp_path), "alice")) == ["Mail last read Mon Nov 30 13:00 2020 (CET)"]


def test_only_a_regular_file_counts(tmp_path):
    target = spool(tmp_path, "target", b"mail", NOON - 60, NOON)
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "zero").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for login in ("link", "zero", "fifo", "dir"):
        assert mail_status(str(tmp_path), login) is None, login
    assert mail_status(str(tmp_path), "target") is not None


def test_a_spool_is_looked_at_without_being_read(tmp_path):
    path = spool(tmp_path, "alice", b"From bob\n", NOON - 60, NOON)
    mail_status(str(tmp_path), "alice")
    assert path.stat().st_atime_ns == (NOON - 60) * SECOND


@pytest.mark.parametrize("login", ["", ".", "..", "../alice", "sub/../../alice", "/etc/passwd", "a\0b"])
def test_a_login_that_is_not_a_plain_name_never_reaches_the_disk(tmp_path, login):
    spool(tmp_path, "alice", b"mail", NOON - 60, NOON)
    (tmp_path / "spool" / "sub").mkdir(parents=True)
    assert not is_spool_name(login)
    assert mail_status(str(tmp_path / "spool"), login) is None
    assert os.path.isfile(os.path.join(tmp_path / "spool", "../alice"))  # what the check keeps out


def test_a_plain_login_is_a_spool_name():
    assert is_spool_name("alice") and is_spool_name("jean.dupont") and is_spool_name("m$")


def test_a_made_up_status_that_is_not_a_regular_file_is_no_mail():
    assert mail_lines(made_up(10, 0, SECOND, mode=stat.S_IFIFO | 0o600)) == ["No mail."]


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.integers(0, 2**40))
def test_any_times_give_one_or_two_lines(read_ns, received_ns, size):
    lines = mail_lines(made_up(size, read_ns, received_ns))
    assert len(lines) == (2 if size and received_ns // SECOND > read_ns // SECOND else 1)
    assert len(reply_bytes(lines).split(b"\r\n")) == len(lines) + 1
