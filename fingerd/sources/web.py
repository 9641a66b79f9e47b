"""The ``web`` source: the tutorial's "read status from the web", with `requests`.

``--web-url https://example.org/status/{name}`` names one URL per user; the
name is URL-quoted into its path or query.  A 200 answer is the status, 404
or 410 means the upstream does not know the name, anything else (a
redirect included: it could point anywhere, a loopback or metadata address
too, and the answer would be shown to the asker) and any network error, or
a body that takes longer than the timeout, is a failure of this source, so
the next source is asked and the reply says the lookup failed.

Fetches run in the source's own ``web-fetch-N`` threads (`Offload`): no
lookup waits past its deadline, even when `requests` is stuck in a read
(it bounds each read, not the whole fetch), and a hanging upstream holds
those few threads, never the connection threads of other users.  When all
of them are busy the upstream is slow, so a lookup does not wait for one:
it fails at once and the next source answers.  At most
`max_bytes` of a body are read; the rest is cut and marked.  Bodies are
asked for without content encoding, so none is decompressed.

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
from fingerd.sources.offload import Offload

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


class WebSource:
    """Fetches one URL per lookup, with a deadline, a size cap, a cache and a bound on fetches."""

    name = "web"
    blocking = True
    max_bytes = 64 * 1024
    max_fetches = 4
    cache_entries = 1024

    def __init__(self, template: str, timeout: float, cache_ttl: float) -> None:
        self.template = template
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.trust = trust_store()
        self._offload = Offload("web-fetch", self.max_fetches, wait_for_thread=False)
        self._sessions = threading.local()
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, Record | None]] = OrderedDict()

    def url(self, name: str) -> str:
        return self.template.replace("{name}", quote(name, safe=""))

    def lookup(self, name: str, deadline: float) -> Record | None:
        cached = self._cached(name)
        if cached is not None:
            return cached[1]
        deadline = min(deadline, time.monotonic() + self.timeout)
        return self._offload.call(lambda: self._fetch_and_remember(name, deadline), deadline, self.url(name))

    def names(self, deadline: float) -> None:
        """A URL per user cannot say who the users are."""
        return None

    def who(self, deadline: float = 0.0) -> None:
        """Statuses only: who is logged in is not known here."""
        return None

    def start(self) -> None:
        self._offload.start()

    def alive(self) -> bool:
        return self._offload.alive()

    def cancel(self) -> None:
        self._offload.cancel()

    def stop(self, deadline: float) -> None:
        """Fetches end by their own deadline; wait for them no longer than the daemon's."""
        self._offload.stop(deadline)

    def _fetch_and_remember(self, name: str, deadline: float) -> Record | None:
        record = self._fetch(name, deadline)
        self._remember(name, record)
        return record

    def _fetch(self, name: str, deadline: float) -> Record | None:
        url = self.url(name)
        read_timeout = max(0.1, deadline - time.monotonic())
        try:
            with self._session().get(url, timeout=read_timeout, stream=True, allow_redirects=False) as response:
                if response.status_code in NOT_KNOWN:
                    return None
                if response.status_code != 200:
                    raise SourceError(f"{url} answered {response.status_code}")
                if response.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
                    raise SourceError(f"{url} answered with a compressed body, which was not asked for")
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
            chunk = response.raw.read1(16384, decode_content=False)
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
            session.headers["User-Agent"] = "fingerd"
            session.headers["Accept-Encoding"] = "identity"
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
