"""The web view in a real headless browser: Debian's Chromium driven by Playwright.

Screenshots go to ``test-artifacts/`` at the top of the checkout.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STATUS = """\
alice: Writing the finger daemon
bob: Out to lunch
mallory: <script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">
carol:
 first line of a plan
   indented art
"""


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is required: apt-get install chromium (the test command installs it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 900, "height": 700})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()


@pytest.fixture
def site(start_daemon, ports):
    port = ports.take()
    daemon = start_daemon(STATUS, web_port=port)
    daemon.url = f"http://127.0.0.1:{port}"
    return daemon


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_click_through_to_a_user(site, page):
    page.goto(site.url + "/")
    assert page.locator("#users li").count() == 4
    assert page.locator("#users li", has_text="alice").locator(".status").inner_text() == "Writing the finger daemon"
    assert screenshot(page, "index").stat().st_size > 0
    page.click("text=carol")
    page.wait_for_url(site.url + "/~carol")
    assert page.locator("#name").inner_text() == "carol"
    assert page.locator("#status").inner_text() == "first line of a plan\n  indented art"
    screenshot(page, "user")


def test_a_hostile_status_runs_no_script(site, page):
    for path in ("/", "/~mallory"):
        page.goto(site.url + path)
        page.wait_for_timeout(300)
        assert page.evaluate("window.pwned") is None
        assert page.dialogs == []
    assert "<script>window.pwned = 1</script>" in page.locator("#status").inner_text()


def test_the_open_list_follows_the_status_file(site, page):
    page.goto(site.url + "/")
    page.wait_for_timeout(500)
    started = time.monotonic()
    site.status_file.write_text(STATUS.replace("Out to lunch", "Back from lunch") + "dave: new here\n")
    expect(page.locator("#users")).to_contain_text("Back from lunch", timeout=3000)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"the page updated after {elapsed:.2f}s"
    assert page.locator("#users li").count() == 5
    assert page.evaluate("window.pwned") is None
    screenshot(page, "index-updated")


def test_the_open_user_page_follows_the_status_file(site, page):
    page.goto(site.url + "/~bob")
    page.wait_for_timeout(500)
    started = time.monotonic()
    site.status_file.write_text(STATUS.replace("Out to lunch", "In a meeting\n until 3"))
    expect(page.locator("#status")).to_contain_text("until 3", timeout=3000)
    assert time.monotonic() - started < 1.0
    assert page.locator("#status").inner_text() == "In a meeting\nuntil 3"


def test_the_live_list_cuts_a_long_first_line_as_the_server_does(site, page):
    """The page redraws its list from /api/users, which has whole statuses: the cut must hold there too."""
    page.goto(site.url + "/")
    page.wait_for_timeout(500)
    site.status_file.write_text(STATUS + "erin: " + "é" * 1000 + "\n")
    expect(page.locator("#users")).to_contain_text("erin", timeout=3000)
    page.wait_for_timeout(500)
    shown = page.locator("#users li", has_text="erin").locator(".status").inner_text()
    assert shown == "é" * 197 + "..."
