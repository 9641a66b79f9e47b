"""The ``web`` source: the tutorial's "read status from the web", with `requests`.

``--web-url https://example.org/status/{name}`` names one URL per user; the
name is URL-quoted into it.  A 200 answer is the status, 404 or 410 means
the upstream does not know the name, anything else (and any network error,
or a body that takes longer than the timeout) is a failure of this source,
so the next source is asked and the reply says the lookup failed.

Fetches run in their own `max_fetches` ``web-fetch-N`` threads; a lookup
hands its fetch over and waits at most the timeout for the result.  So:

* no lookup waits longer than the timeout, even when `requests` is stuck in
  a read (it bounds each read, not the whole fetch);
* a fetch that overruns keeps its slot until it really ends, and a lookup
  that finds every slot taken fails at once instead of queueing, so a
  hanging upstream holds a few threads, never the lookup workers of other
  users;
* at most `max_bytes` of a body are read; the rest is cut and marked.

Answers (found and not found, never failures) are kept for
``--web-cache-ttl`` seconds.  Each thread has its own `requests.Session`,
which is not promised to be thread-safe.  The TLS trust store is loaded when
the source is built, before the daemon drops privileges, because the CA
bundle may live where the unprivileged user cannot read it.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import OrderedDict
from urllib.parse import quote

import certifi
import requests
import requests.adapters

from fingerd.sources.base import Record, SourceError, status_record, text_lines
from fingerd.workers import WorkerPool

NOT_KNOWN = (404, 410)


class _PreloadedTrust(requests.adapters.HTTPAdapter):
    """An adapter verifying against a trust store loaded in advance, never by path at fetch time."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        kwargs["ssl_context"] = self.context
        super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]

    def cert_verify(self, conn: object, url: str, verify: object, cert: object) -> None:
        conn.cert_reqs = "CERT_REQUIRED"  # type: ignore[attr-defined]


def trust_store() -> ssl.SSLContext:
    """Certifi's CA bundle, the one `requests` uses, read now."""
    return ssl.create_default_context(cafile=certifi.where())


class _Outcome:
    """The result of one fetch, handed from the fetch thread to the waiting lookup."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.record: Record | None = None
        self.error: SourceError | None = None

    def wait(self, timeout: float, what: str) -> Record | None:
        if not self.done.wait(timeout):
            raise SourceError(f"{what}: no answer within {timeout:g} s")
        if self.error is not None:
            raise self.error
        return self.record


class WebSource:
    """Fetches one URL per lookup, with a deadline, a size cap, a cache and a bound on fetches."""

    name = "web"
    blocking = True
    max_bytes = 64 * 1024
    max_fetches = 4
    cache_entries = 1024
    max_redirects = 3

    def __init__(self, template: str, timeout: float, cache_ttl: float) -> None:
        self.template = template
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.trust = trust_store()
        self._fetches = threading.BoundedSemaphore(self.max_fetches)
        self._pool = WorkerPool("web-fetch", self.max_fetches)
        self._sessions = threading.local()
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, Record | None]] = OrderedDict()

    def url(self, name: str) -> str:
        return self.template.replace("{name}", quote(name, safe=""))

    def lookup(self, name: str) -> Record | None:
        cached = self._cached(name)
        if cached is not None:
            return cached[1]
        if not self._fetches.acquire(blocking=False):
            raise SourceError(f"{self.max_fetches} fetches already in progress")
        outcome = _Outcome()
        self._pool.submit(lambda: self._fetch_into(name, outcome), lambda: self._cancel(outcome))
        return outcome.wait(self.timeout, self.url(name))

    def names(self) -> None:
        """A URL per user cannot say who the users are."""
        return None

    def start(self) -> None:
        self._pool.start()

    def alive(self) -> bool:
        return self._pool.alive()

    def stop(self, deadline: float) -> None:
        """Fetches end by their own deadline; wait for them no longer than the daemon's."""
        self._pool.stop(deadline)

    def _fetch_into(self, name: str, outcome: _Outcome) -> None:
        """In a fetch thread: fetch, remember, and hand the result to the waiting lookup."""
        try:
            outcome.record = self._fetch(name)
            self._remember(name, outcome.record)
        except SourceError as error:
            outcome.error = error
        except Exception as error:
            outcome.error = SourceError(f"{self.url(name)}: {type(error).__name__}")
        finally:
            self._fetches.release()
            outcome.done.set()

    def _cancel(self, outcome: _Outcome) -> None:
        """A fetch dropped by a stopping daemon: free its slot and its waiter."""
        outcome.error = SourceError("stopping")
        self._fetches.release()
        outcome.done.set()

    def _fetch(self, name: str) -> Record | None:
        url = self.url(name)
        deadline = time.monotonic() + self.timeout
        try:
            with self._session().get(url, timeout=self.timeout, stream=True, allow_redirects=True) as response:
                if response.status_code in NOT_KNOWN:
                    return None
                if response.status_code != 200:
                    raise SourceError(f"{url} answered {response.status_code}")
                body = self._body(response, deadline)
        except requests.RequestException as error:
            raise SourceError(f"{url}: {type(error).__name__}") from None
        return status_record(name, text_lines(body, self.max_bytes))

    def _body(self, response: requests.Response, deadline: float) -> bytes:
        """Read what has arrived, piece by piece, so a trickling upstream meets the deadline."""
        chunks: list[bytes] = []
        size = 0
        while size <= self.max_bytes:
            if time.monotonic() > deadline:
                raise SourceError(f"{response.url} took longer than {self.timeout:g} s")
            chunk = response.raw.read1(16384, decode_content=True)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    def _session(self) -> requests.Session:
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            session.max_redirects = self.max_redirects
            session.headers["User-Agent"] = "fingerd"
            session.mount("https://", _PreloadedTrust(self.trust))
            session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
            self._sessions.session = session
        return session

    def _cached(self, name: str) -> tuple[float, Record | None] | None:
        with self._lock:
            entry = self._cache.get(name)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._cache[name]
                return None
            return entry

    def _remember(self, name: str, record: Record | None) -> None:
        if self.cache_ttl <= 0:
            return
        with self._lock:
            self._cache[name] = (time.monotonic() + self.cache_ttl, record)
            self._cache.move_to_end(name)
            while len(self._cache) > self.cache_entries:
                self._cache.popitem(last=False)
