"""The web source against a real HTTP server run by the test.

The upstream answers some names, 404s others, fails with 500, hangs, sends
50 MB, or trickles; the daemon must answer every finger query within its
timeouts, say so when the upstream failed, and keep answering other users
while the upstream hangs.
"""

from __future__ import annotations

import collections
import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import finger, run_fingerd

LOOKUP_FAILED = "Lookup failed, try again later\r\n"


class Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), UpstreamHandler)
        self.hits: collections.Counter[str] = collections.Counter()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, name="upstream", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/status/{{name}}"


class UpstreamHandler(BaseHTTPRequestHandler):
    server: Upstream

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        name = self.path.rsplit("/", 1)[-1]
        self.server.hits[name] += 1
        if name.startswith("hang"):
            self.server.release.wait(30)
            return
        if name == "broken":
            self.reply(500, b"oops")
        elif name == "moved":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/secret")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif name == "zipped":
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"\x1f\x8b\x08\x00")
        elif name == "huge":
            self.stream(b"h" * 65536, 800)
        elif name == "trickle":
            self.trickle()
        elif name.startswith("missing"):
            self.reply(404, b"not here")
        else:
            self.reply(200, f"{name} via the web\n\x1b[31mred\n".encode())

    def reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream(self, chunk: bytes, count: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(chunk) * count))
        self.end_headers()
        try:
            for _ in range(count):
                self.wfile.write(chunk)
        except OSError:
            pass

    def trickle(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"t")
                self.wfile.flush()
                if self.server.release.wait(0.2):
                    return
        except OSError:
            pass


@pytest.fixture
def upstream():
    server = Upstream()
    server.thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def daemon(start_daemon, upstream, ports):
    return start_daemon(
        "alice: from the status file\n",
        source="[web, file]",
        web_url=upstream.url,
        web_timeout=1,
        web_port=ports.take(),
    )


def web_port(daemon) -> int:
    return int(daemon.config.read_text().split("web-port = ")[1].split()[0])


def test_a_fetched_status_is_served_and_sanitized(daemon):
    assert daemon.text("bob") == "bob via the web\r\n^[[31mred\r\n"
    assert daemon.text("/W bob") == "Login: bob\r\nPlan:\r\nbob via the web\r\n^[[31mred\r\n"


def test_404_falls_through_to_the_next_source(daemon):
    assert daemon.text("missing") == "No such user\r\n"


def test_upstream_error_says_the_lookup_failed_and_is_logged(daemon):
    assert daemon.text("broken") == LOOKUP_FAILED
    assert "answered 500" in daemon.wait_for_log("source web failed for broken")


def test_redirects_and_unasked_compression_are_failures(daemon):
    assert daemon.text("moved") == LOOKUP_FAILED
    assert "answered 302" in daemon.wait_for_log("source web failed for moved")
    assert daemon.text("zipped") == LOOKUP_FAILED
    assert "compressed" in daemon.wait_for_log("source web failed for zipped")


def test_a_hanging_upstream_fails_within_the_timeout(daemon):
    started = time.monotonic()
    assert daemon.text("hang") == LOOKUP_FAILED
    assert time.monotonic() - started < 3
    started = time.monotonic()
    assert daemon.text("trickle") == LOOKUP_FAILED
    assert time.monotonic() - started < 3


def test_fifty_megabytes_are_cut_at_the_cap(daemon):
    reply = daemon.text("huge")
    assert reply.endswith("[truncated at 64 KiB]\r\n") and len(reply) < 70_000


def test_answers_are_cached_for_the_ttl(daemon, upstream, start_daemon):
    for _ in range(3):
        daemon.text("carol")
        daemon.text("missing2")
    assert upstream.hits["carol"] == 1 and upstream.hits["missing2"] == 1
    daemon.text("broken")
    daemon.text("broken")
    assert upstream.hits["broken"] == 2, "failures are not cached"
    uncached = start_daemon("", source="[web]", web_url=upstream.url, web_cache_ttl=0)
    uncached.text("dave")
    uncached.text("dave")
    assert upstream.hits["dave"] == 2


def test_a_hanging_upstream_does_not_hold_up_other_users(daemon, upstream):
    """Hanging fetches take their own threads; a user the next source knows is still answered."""
    replies: dict[str, bytes] = {}

    def ask(name: str) -> None:
        replies[name] = finger(daemon.port, name.encode() + b"\r\n")

    hung = [threading.Thread(target=ask, args=(f"hang{number}",)) for number in range(12)]
    for thread in hung:
        thread.start()
    deadline = time.monotonic() + 3
    while sum(upstream.hits[f"hang{number}"] for number in range(12)) < 4:
        assert time.monotonic() < deadline, "the hanging fetches never started"
        time.sleep(0.01)
    assert daemon.text("alice") == "from the status file\r\n"
    assert len([name for name in replies if name.startswith("hang")]) < 12, "alice waited for the hung fetches"
    for thread in hung:
        thread.join()
    assert set(replies.values()) == {LOOKUP_FAILED.encode()}
    assert max(upstream.hits[f"hang{number}"] for number in range(12)) == 1


def test_web_view_and_json_use_the_web_source(daemon):
    port = web_port(daemon)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/users/erin", timeout=5) as response:
        assert json.load(response) == {"name": "erin", "status": "erin via the web\n^[[31mred"}
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/users/broken", timeout=5)
    assert failed.value.code == 503 and json.load(failed.value) == {"error": "Lookup failed, try again later"}
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/missing", timeout=5)
    assert missing.value.code == 404


@pytest.mark.parametrize(
    "options, message",
    [
        (["--source", "web"], "argument --source: web needs --web-url"),
        (["--web-url", "http://x/{name}"], "argument --web-url: set, but --source does not list web"),
        (["--source", "web", "--web-url", "http://x/status"], "has no {name}"),
        (["--source", "web", "--web-url", "file:///etc/{name}"], "is not an http or https URL"),
        (["--source", "web", "--web-url", "http://{name}.internal/"], "must be in the path or the query"),
        (["--source", "web", "--web-url", "http://h/#{name}"], "must be in the path or the query"),
        (["--source", "web", "--web-url", "http://u:secret@h/{name}"], "credentials in the URL are refused"),
        (["--source", "web", "--web-url", "http://h:99999/{name}"], "has an invalid port"),
        (["--source", "web", "--web-url", "http://x/{name}", "--web-timeout", "0"], "argument --web-timeout"),
        (["--source", "web", "--web-url", "http://x/{name}", "--web-cache-ttl", "-1"], "argument --web-cache-ttl"),
    ],
)
def test_bad_web_options_are_refused(options, message):
    result = run_fingerd("--check-config", *options)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
