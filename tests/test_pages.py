"""The web view's pure parts: escaping, templates, JSON and XML-RPC bodies."""

from __future__ import annotations

import html
import json
import re
import xmlrpc.client

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.finger.answer import LIST_STATUS_WIDTH
from fingerd.sources.base import status_record
from fingerd.sources.directory import Directory, Lookup
from fingerd.sources.file import FileSource
from fingerd.users.table import UserTable
from fingerd.web import api, pages
from fingerd.web.pages import Markup, TemplateError, Templates, escape

TEMPLATES = Templates.load()
UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@given(st.text())
def test_escaped_text_holds_no_markup_and_reads_back(text):
    escaped = escape(text)
    assert not set("<>\"'") & set(escaped)
    assert not UNSAFE.search(escaped)
    if not UNSAFE.search(text):
        assert html.unescape(escaped) == text


def test_markup_is_not_escaped_twice():
    assert escape(Markup("<b>x</b>")) == "<b>x</b>"
    assert escape("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"


@given(st.lists(st.tuples(st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True), st.text()), max_size=5))
def test_index_page_never_carries_a_tag_from_a_status(listing):
    page = pages.index_page(TEMPLATES, "host", listing).decode("utf-8")
    for _, status in listing:
        if "<" in status:
            assert status not in page


def test_index_page_cuts_a_long_first_line_as_finger_does():
    page = pages.index_page(TEMPLATES, "host", [("big", ("x" * 1_000_000, "second")), ("bob", ("lunch",))]).decode()
    assert '<span class="status">' + "x" * (LIST_STATUS_WIDTH - 3) + "...</span>" in page
    assert "x" * (LIST_STATUS_WIDTH - 2) not in page
    assert "second" not in page
    assert len(page) < 4096


def test_user_page_keeps_lines_and_indentation():
    page = pages.user_page(TEMPLATES, "host", "carol", ("first", "  <indented>")).decode()
    assert "first\n  &lt;indented&gt;</pre>" in page
    assert 'data-live="/api/users/carol"' in page


def test_not_found_page():
    assert "No such user" in pages.not_found_page(TEMPLATES, "host").decode()


def test_templates_with_unknown_placeholders_are_refused(tmp_path):
    (tmp_path / "row.html").write_text("<li>$nmae</li>")
    with pytest.raises(TemplateError, match="row.html"):
        Templates.load(str(tmp_path))


def test_templates_with_a_stray_dollar_are_refused(tmp_path):
    (tmp_path / "user.html").write_text("<p>costs $</p>")
    with pytest.raises(TemplateError, match="user.html"):
        Templates.load(str(tmp_path))


def test_overrides_are_per_file(tmp_path):
    (tmp_path / "not-found.html").write_text("<p>gone</p>")
    templates = Templates.load(str(tmp_path))
    assert "<p>gone</p>" in pages.not_found_page(templates, "h").decode()
    assert templates.static("live.js") == TEMPLATES.static("live.js")


def table_with(users):
    table = UserTable()
    table.replace(users)
    return Directory([FileSource(table)], table)


def test_json_bodies():
    directory = table_with({"bob": ("Out", " to lunch"), "eve": ("\x1b[2J",)})
    assert json.loads(api.users_json(directory.listing())) == {"bob": "Out\n to lunch", "eve": "^[[2J"}
    assert json.loads(api.user_json(status_record("bob", ("a", "b")))) == {"name": "bob", "status": "a\nb"}
    assert directory.lookup("../bob") == Lookup(None)
    assert directory.lookup("BOB").record == status_record("bob", ("Out", " to lunch"))


def test_xmlrpc_dispatch_keeps_xml_valid():
    dispatcher = api.make_dispatcher(table_with({"eve": ("bell\x07 esc\x1b nul\x00",)}))
    request = xmlrpc.client.dumps(("eve",), "getUser").encode()
    (status,), _ = xmlrpc.client.loads(dispatcher._marshaled_dispatch(request))
    assert status == "bell^G esc^[ nul^@"
    request = xmlrpc.client.dumps((), "getUsers").encode()
    (names,), _ = xmlrpc.client.loads(dispatcher._marshaled_dispatch(request))
    assert names == ["eve"]


@given(st.text())
def test_get_user_answers_any_string(name):
    rpc = api.FingerRPC(table_with({"alice": ("hi",)}))
    assert rpc.getUser(name) in ("hi", "No such user")
