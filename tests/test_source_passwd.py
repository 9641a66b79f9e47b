"""The passwd source against real accounts, made with ``useradd`` for this run.

Homes live in a temporary directory every user can traverse; each account
gets the dot files a hostile or careless user could leave: a symlink to
``/etc/shadow``, a FIFO, a link to ``/dev/zero``, a 10 MB plan, invalid
UTF-8, a file owned by someone else, ``~/.nofinger``.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
import time
import urllib.request
import xmlrpc.client
from pathlib import Path

import pytest

from conftest import ACCOUNT_PREFIX as PREFIX
from conftest import Accounts
from conftest import write_owned as write

pytestmark = pytest.mark.skipif(not Accounts.possible(), reason="creating accounts needs root and useradd")


@pytest.fixture(scope="module")
def accounts():
    with Accounts.temporary() as made:
        alice, home = made.add("alice", gecos="& Liddell,Room 1,555-1234,555-9999")
        write(home, ".plan", b"Down the rabbit hole\n  and further\n", alice)
        write(home, ".project", b"Curiouser\n", alice)
        write(home, ".pgpkey", b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n", alice)

        shadow, home = made.add("shadow")
        (home / ".plan").symlink_to("/etc/shadow")

        fifo, home = made.add("fifo")
        os.mkfifo(home / ".plan")

        zero, home = made.add("zero")
        (home / ".plan").symlink_to("/dev/zero")

        big, home = made.add("big")
        write(home, ".plan", b"big plan\n" + b"z" * 10_000_000, big)

        bad, home = made.add("bad", gecos="Zoë Ünal")
        write(home, ".plan", b"bad \xff\xfe bytes\n", bad)

        foreign, home = made.add("foreign")
        write(home, ".plan", b"planted by root\n", "root")

        hidden, home = made.add("hidden")
        write(home, ".plan", b"you should not see this\n", hidden)
        write(home, ".nofinger", b"", hidden)

        service, home = made.add("svc", shell="/usr/sbin/nologin")
        write(home, ".plan", b"service account\n", service)

        closed, home = made.add("closed", mode=0o700)
        write(home, ".plan", b"private plan\n", closed)

        yield {
            "alice": alice, "shadow": shadow, "fifo": fifo, "zero": zero, "big": big, "bad": bad,
            "foreign": foreign, "hidden": hidden, "svc": service, "closed": closed,
        }


@pytest.fixture(scope="module")
def uid_floor(accounts) -> int:
    return min(pwd.getpwnam(name).pw_uid for name in accounts.values())


@pytest.fixture
def daemon(start_daemon, accounts, uid_floor, ports, tmp_path):
    """Every account listed (``--list-all-accounts``); nobody logged in (an empty utmp), no mail."""
    (tmp_path / "utmp").write_bytes(b"")
    (tmp_path / "mail").mkdir()
    return start_daemon(
        "filed: from the status file\n",
        source="[file, passwd]",
        passwd_min_uid=uid_floor,
        web_port=ports.take(),
        list_all_accounts="true",
        utmp_file=str(tmp_path / "utmp"),
        mail_dir=str(tmp_path / "mail"),
    )


def test_short_form_is_the_classic_layout(daemon, accounts):
    name = accounts["alice"]
    reply = daemon.text(name).split("\r\n")
    assert reply[0].startswith(f"Login: {name}") and reply[0].endswith(f"Name: {name.capitalize()} Liddell")
    assert reply[1].startswith("Directory: ") and reply[1].endswith("Shell: /bin/sh")
    assert reply[2:] == ["Never logged in.", "No mail.", "Plan:", "Down the rabbit hole", "  and further", ""]


def test_verbose_form_adds_office_project_and_pgp_key(daemon, accounts):
    reply = daemon.text("/W " + accounts["alice"])
    assert "Office: Room 1, 555-1234" in reply and "Home Phone: 555-9999" in reply
    assert "Project: Curiouser\r\n" in reply and "PGP key:\r\n-----BEGIN PGP PUBLIC KEY BLOCK-----" in reply
    assert "Project" not in daemon.text(accounts["alice"])


@pytest.mark.parametrize("who", ["shadow", "fifo", "zero", "foreign"])
def test_unsafe_plans_are_skipped_not_followed(daemon, accounts, who):
    started = time.monotonic()
    reply = daemon.text(accounts[who])
    assert time.monotonic() - started < 4, "an unsafe plan must not hold the reply"
    assert reply.startswith(f"Login: {accounts[who]}")
    assert reply.endswith("No Plan.\r\n")
    assert "root:" not in reply and "planted" not in reply


def test_a_huge_plan_is_cut_with_a_marker(daemon, accounts):
    reply = daemon.text(accounts["big"])
    assert reply.endswith("[truncated at 64 KiB]\r\n")
    assert len(reply) < 70_000


def test_invalid_utf8_shows_escaped_in_that_reply_only(daemon, accounts):
    reply = daemon.text(accounts["bad"])
    assert "Name: Zoë Ünal" in reply and "bad \\xff\\xfe bytes" in reply
    assert "Down the rabbit hole" in daemon.text(accounts["alice"])


@pytest.mark.parametrize("who", ["hidden", "svc"])
def test_hidden_and_service_accounts_answer_like_nobody(daemon, accounts, who):
    nobody = daemon.text(PREFIX + "nonexistent")
    assert nobody == "No such user\r\n"
    assert daemon.text(accounts[who]) == nobody
    assert daemon.text("/W " + accounts[who]) == daemon.text("/W " + PREFIX + "nonexistent")
    assert daemon.text("nobody") == nobody
    assert daemon.text("root") == nobody


def test_listing_has_status_file_and_visible_accounts(daemon, accounts):
    listing = daemon.text("")
    assert "filed" in listing and accounts["alice"] in listing and "Down the rabbit hole" in listing
    for who in ("hidden", "svc"):
        assert accounts[who] not in listing


def test_web_json_and_xmlrpc_see_the_accounts(daemon, accounts):
    name = accounts["alice"]
    port = int(daemon.config.read_text().split("web-port = ")[1].split()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/users/{name}", timeout=5) as response:
        assert json.load(response) == {
            "name": name, "status": "Down the rabbit hole\n  and further", "online": False, "idle_seconds": None,
            "since": None,
        }
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/users", timeout=5) as response:
        users = json.load(response)
    assert users["filed"] == "from the status file" and name in users and accounts["hidden"] not in users
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/~{name}", timeout=5) as response:
        assert "Down the rabbit hole" in response.read().decode()
    rpc = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2")
    assert rpc.getUser(name) == "Down the rabbit hole\n  and further"
    assert rpc.getUser(accounts["hidden"]) == "No such user"
    assert name in rpc.getUsers()


def test_min_uid_and_deny_list(start_daemon, accounts, uid_floor):
    high = start_daemon("", source="[passwd]", passwd_min_uid=65000)
    assert high.text(accounts["alice"]) == "No such user\r\n"
    denied = start_daemon("", source="[passwd]", passwd_min_uid=uid_floor, passwd_deny=f"[{accounts['alice']}]")
    assert denied.text(accounts["alice"]) == "No such user\r\n"
    assert denied.text(accounts["bad"]).startswith("Login: ")


def test_as_nobody_a_closed_home_hides_the_account(start_daemon, accounts, uid_floor):
    """The daemon cannot see whether a 0700 home holds a ~/.nofinger, so it keeps the account hidden."""
    shared = Path(tempfile.mkdtemp(prefix="fingerd-passwd-"))
    try:
        shared.chmod(0o755)
        daemon = start_daemon(
            "", workdir=shared, source="[passwd]", passwd_min_uid=uid_floor, user="nobody", group="nogroup"
        )
        assert daemon.text(accounts["closed"]) == "No such user\r\n"
        assert accounts["closed"] not in daemon.text("")
        assert "Down the rabbit hole" in daemon.text(accounts["alice"])
        daemon.stop()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_no_later_source_answers_for_a_hidden_account(start_daemon, accounts, uid_floor):
    daemon = start_daemon("", source="[passwd, command]", passwd_min_uid=uid_floor, command="/bin/echo from the command")
    for who in ("hidden", "svc"):
        assert daemon.text(accounts[who]) == "No such user\r\n"
    assert daemon.text("root") == "No such user\r\n"
    assert daemon.text(PREFIX + "nonexistent") == f"from the command {PREFIX}nonexistent\r\n"
