"""A thread per connection, bounded, reaped and joined: a `socketserver` mixin.

Every network service of the daemon is a `socketserver` server with this
mixin: the accepting thread takes a connection and starts a named thread
for it, and that thread runs plain blocking code with a deadline.  What the
standard `ThreadingMixIn` lacks for a daemon on the open internet is added
here:

* a limit (`max_connections`, `Slots` taken without waiting), and a limit
  per client (`max_per_address`, grouped by `listen.client_group`); past either, `busy_reply` is sent at once and the
  connection closed, instead of queueing.  A connection from a trusted
  proxy (`proxies`) is counted against the client it speaks for, once
  its thread has read who that is (`count_client`);
* out of file descriptors, no spinning: a descriptor kept in reserve
  (`DescriptorReserve`, one for the whole daemon) is given up to accept one
  waiting client and tell it `busy_reply`, and the acceptor pauses when
  even that fails;
* a lifetime: a connection still open `lifetime` seconds after it was
  accepted is shut down by the accepting thread (checked every
  `poll_interval` in `service_actions`), a safety net under each handler's
  own deadlines;
* named threads, and a stop in three steps that the application takes for
  every service at once: `stop_accepting`; at the cut-off, shortly before
  the deadline, `cut` (the read side of every connection is shut, so a
  thread still waiting for its client wakes, answers and ends); and
  `stop(deadline)`, which joins the threads, shuts what is left, and joins
  again (`join_all`);
* `bind()` before the privilege drop and `start()` (listen, serve) after.

A server may answer some requests on the accepting thread itself (the
finger service does, for a query already in hand that memory answers) and
call `start_thread` only for the rest; the request it passes on may then
be an object carrying its socket (`socket_of`), as `UDPServer`'s requests
carry theirs.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from fingerd.listen import EarlyBindMixIn, client_group, peer_text
from fingerd.proxy import TrustedProxies

log = logging.getLogger("fingerd")

DONT_WAIT = getattr(socket, "MSG_DONTWAIT", 0)
"""Send and receive flag: this one call does not block, whatever the socket's mode."""
REPLY_RESERVE = 0.5
"""Seconds before the stop deadline at which work still waiting is cut, so its client can still be answered."""
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
Work = Callable[[object, object], None]
"""What a connection's thread runs: ``work(request, client_address)``."""


def shut_down(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    """Shut a socket down so that a thread blocked on it wakes; a socket already gone is left alone.

    The plain socket's shutdown, even for TLS: `ssl.SSLSocket.shutdown` also
    drops the TLS state, and a reply still being written would go out in
    clear.
    """
    try:
        socket.socket.shutdown(sock, how)
    except OSError:
        pass


def join_all(threads: Iterable[threading.Thread], deadline: float) -> list[threading.Thread]:
    """Join ``threads`` until ``deadline`` (a `time.monotonic` value); return those still running."""
    stuck = []
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            stuck.append(thread)
    return stuck


class DescriptorReserve:
    """One descriptor kept back, to accept a client and tell it "busy" when the process has run out.

    Acceptors share it under a lock, so that two of them never give it up
    at once.  While it is given up, or missing because another thread took
    the descriptor it freed, `held` is False and every acceptor tells each
    new client busy instead of serving it, so the descriptor comes back
    with the first one closed: no service serves on the last descriptor.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd = _open_reserve()

    def held(self) -> bool:
        """True while the reserve is kept (taken again if it can be); False while it is given up or lost.

        False means the process is at its last descriptors: the caller must
        not keep the one it just accepted.
        """
        if self._fd is not None:
            return True
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._fd = _open_reserve()
            return self._fd is not None
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def given_up(self) -> Iterator[bool]:
        """Free the reserve for the ``with`` block (False: there was none to free); take it back after."""
        with self._lock:
            if self._fd is None:
                self._fd = _open_reserve()
            if self._fd is None:
                yield False
                return
            fd, self._fd = self._fd, None
            os.close(fd)
            try:
                yield True
            finally:
                self._fd = _open_reserve()

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)


class Slots:
    """At most `limit` connections served at once: taken without waiting, given back from any thread.

    A `threading.BoundedSemaphore` would do, but it is a `Condition` written
    in Python, and a busy server takes and gives back a slot per connection;
    this is a counter under a plain lock.  Only the accepting thread takes
    slots, so what `free` tells it stays true until it takes one.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def free(self) -> bool:
        """True if a slot is free now (read without the lock: one int, written under it)."""
        return self.held < self.limit

    def acquire(self) -> bool:
        """Take a slot if one is free; never waits."""
        with self._lock:
            if self.held >= self.limit:
                return False
            self.held += 1
            return True

    def release(self) -> None:
        with self._lock:
            if self.held <= 0:
                raise ValueError("slot released more often than taken")
            self.held -= 1


Permits = Slots | threading.BoundedSemaphore
"""What a connection's thread holds and gives back with ``release()`` when it ends."""


class AddressCounts:
    """Connections in progress per client group, held under a limit (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, group: str) -> bool:
        if not self.limit:
            return True
        with self._lock:
            count = self._counts.get(group, 0)
            if count >= self.limit:
                return False
            self._counts[group] = count + 1
            return True

    def give_back(self, group: str) -> None:
        if not self.limit:
            return
        with self._lock:
            count = self._counts.get(group, 1) - 1
            if count:
                self._counts[group] = count
            else:
                self._counts.pop(group, None)


@dataclass
class _Active:
    sock: socket.socket
    expires: float
    group: str | None
    permits: Permits
    """What the thread holds and gives back when it ends: a slot, or a permit of its own kind."""


class BoundedThreadsMixIn(EarlyBindMixIn):
    """Mix in before a `socketserver` server class; call `init_threads` first in ``__init__``."""

    max_connections = 64
    max_per_address = 0
    poll_interval = 0.1
    lifetime = 20.0
    busy_reply: bytes | None = None
    proxies = TrustedProxies()
    """Peers whose connections speak for another client (`--proxy-from`); counted per that client, not per peer."""
    name = "conn"
    last_join = 1.0
    """Seconds to wait, past the stop deadline, for threads whose sockets were just shut."""
    accept_error_pause = 0.05
    """Seconds the acceptor rests when it cannot accept even with its reserve descriptor."""

    def init_threads(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.slots = Slots(self.max_connections)
        self.per_address = AddressCounts(self.max_per_address)
        self.reserve = DescriptorReserve()
        self._next_error_log = 0.0
        self._numbers = itertools.count(1)
        self._active: dict[threading.Thread, _Active] = {}
        self._active_lock = threading.Lock()
        self._next_reap = 0.0
        self._acceptor = threading.Thread(
            target=self.serve_forever,  # type: ignore[attr-defined]
            args=(self.poll_interval,),
            name=f"{self.name}-acceptor",
            daemon=True,
        )

    # -- lifecycle -----------------------------------------------------

    def start(self) -> None:
        self.server_activate()  # type: ignore[attr-defined]
        self._acceptor.start()

    def alive(self) -> bool:
        return self._acceptor.is_alive()

    def stop_accepting(self) -> None:
        """Accept no new connection; the ones in progress go on."""
        if self._acceptor.is_alive():
            self.shutdown()  # type: ignore[attr-defined]
            self._acceptor.join()
        self.server_close()  # type: ignore[attr-defined]

    def cut(self) -> None:
        """Wake every thread still waiting for its client's input: it reads the end of input, answers and ends."""
        self.shut(self.threads(), socket.SHUT_RD)

    def stop(self, deadline: float) -> None:
        """Stop accepting; let requests run until ``deadline``; then end and join them."""
        self.stop_accepting()
        join_all(self.threads(), deadline)
        self.shut(self.threads())
        stuck = join_all(self.threads(), max(deadline, time.monotonic()) + self.last_join)
        if stuck:
            log.warning("%s: still running at shutdown: %s", self.name, ", ".join(thread.name for thread in stuck))

    def use_reserve(self, reserve: DescriptorReserve) -> None:
        """Share the daemon's one descriptor reserve instead of keeping one of this service's own."""
        if reserve is not self.reserve:
            self.reserve.close()
            self.reserve = reserve

    def threads(self) -> list[threading.Thread]:
        """The connection threads running now."""
        with self._active_lock:
            return list(self._active)

    # -- one connection, in its own thread -----------------------------

    def process_request(self, request: object, client_address: object) -> None:
        """A thread for the connection; one from a trusted proxy is counted once its client is known (`count_client`)."""
        if not self.slots.acquire():
            self.turn_away(request, client_address)
            return
        self.start_thread(request, client_address, counted=not self.proxies.trusts(client_address))

    def start_thread(self, request: object, client_address: object, counted: bool = True) -> None:
        """Serve ``request`` in a thread of its own; the caller has taken a slot for it.

        A client that already holds `max_per_address` connections is turned
        away instead, and the slot given back; ``counted=False`` serves it
        regardless (a reply already begun must be finished).
        """
        group = client_group(client_address) if counted else None
        if group is not None and not self.per_address.take(group):
            self.slots.release()
            self.turn_away(request, client_address)
            return
        self._launch(self.handle_connection, request, client_address, self.lifetime, group, self.slots)

    def start_short_thread(
        self, work: Work, request: object, client_address: object, lifetime: float, permits: Permits
    ) -> None:
        """Run ``work`` in a thread that holds one of ``permits`` (taken by the caller) instead of a slot.

        It is reaped at ``lifetime``, cut and joined at stop, like a
        connection thread.
        """
        self._launch(work, request, client_address, lifetime, None, permits)

    def _launch(
        self,
        work: Work,
        request: object,
        client_address: object,
        lifetime: float,
        group: str | None,
        permits: Permits,
    ) -> None:
        thread = threading.Thread(target=self._run, args=(work, request, client_address), daemon=True)
        thread.name = f"{self.name}-{next(self._numbers)}"
        with self._active_lock:
            self._active[thread] = _Active(self.socket_of(request), time.monotonic() + lifetime, group, permits)
        try:
            thread.start()
        except RuntimeError:
            log.error("%s: cannot start a thread for %s", self.name, peer_text(client_address))
            with self._active_lock:
                self._active.pop(thread, None)
            if group is not None:
                self.per_address.give_back(group)
            permits.release()
            self.shutdown_request(request)  # type: ignore[attr-defined]

    def count_client(self, client_address: object) -> bool:
        """From a connection's thread started uncounted: count it against ``client_address``, the client a proxy named.

        False when that client already holds `max_per_address`
        connections: the caller tells it busy.  What is counted here is
        given back when the thread ends.  A connection counted already
        (when it was accepted) is left as it is.
        """
        with self._active_lock:
            active = self._active.get(threading.current_thread())
        if active is None or active.group is not None:
            return True
        group = client_group(client_address)
        if not self.per_address.take(group):
            return False
        active.group = group
        return True

    def socket_of(self, request: object) -> socket.socket:
        """The connected socket of ``request`` (override when requests carry more than their socket)."""
        return request  # type: ignore[return-value]

    def track(self, sock: socket.socket) -> None:
        """Call from a connection's thread when its socket object changes (TLS)."""
        with self._active_lock:
            active = self._active.get(threading.current_thread())
            if active is not None:
                active.sock = sock

    def _run(self, work: Work, request: object, client_address: object) -> None:
        try:
            work(request, client_address)
        except Exception:
            log.exception("error answering %s", peer_text(client_address))
        finally:
            with self._active_lock:
                active = self._active.pop(threading.current_thread(), None)
            if active is not None:
                if active.group is not None:
                    self.per_address.give_back(active.group)
                active.permits.release()

    def handle_connection(self, request: object, client_address: object) -> None:
        """Serve one connection in its own thread, then close it."""
        try:
            self.finish_request(request, client_address)  # type: ignore[attr-defined]
        finally:
            self.shutdown_request(request)  # type: ignore[attr-defined]

    def turn_away(self, request: object, client_address: object) -> None:
        """Past the limit: `busy_reply` without waiting, then close.

        What the client already sent is read first: closing a socket with
        unread input makes the kernel answer with a reset, which can
        destroy the reply before the client reads it.
        """
        self.log_busy(client_address)
        sock = self.socket_of(request)
        try:
            sock.recv(4096, DONT_WAIT)
        except OSError:
            pass
        try:
            if self.busy_reply:
                sock.send(self.busy_reply, DONT_WAIT)
        except OSError:
            pass
        self.shutdown_request(request)  # type: ignore[attr-defined]

    def get_request(self) -> tuple[socket.socket, object]:
        """Accept; while the descriptor reserve is missing, tell the client busy rather than serve it."""
        try:
            request, client_address = super().get_request()  # type: ignore[misc]
        except OSError as error:
            if error.errno in OUT_OF_DESCRIPTORS:
                self._out_of_descriptors(error)
            raise
        if not self.reserve.held():
            self.turn_away_now(request, client_address)
            raise BlockingIOError(errno.EAGAIN, "told busy: no descriptor to spare")
        return request, client_address

    def _out_of_descriptors(self, error: OSError) -> None:
        """Give up the reserve descriptor to tell one waiting client `busy_reply`; rest when even that fails.

        Without this, the listening socket stays readable and the acceptor
        would spin on ``accept``, while the waiting clients hear nothing
        until they time out.
        """
        now = time.monotonic()
        if now >= self._next_error_log:
            self._next_error_log = now + 1.0
            log.error("%s: cannot accept a connection: %s", self.name, error.strerror)
        with self.reserve.given_up() as freed:
            if freed:
                try:
                    request, client_address = super().get_request()  # type: ignore[misc]
                except OSError:
                    pass
                else:
                    self.turn_away_now(request, client_address)
                    return
        time.sleep(self.accept_error_pause)

    def handle_error(self, request: object, client_address: object) -> None:
        """A bug met while accepting: log it with its traceback (`socketserver` would print it to stderr)."""
        log.exception("error with a connection from %s", peer_text(client_address))

    def turn_away_now(self, request: object, client_address: object) -> None:
        """Out of descriptors: turn away without holding this one a moment longer (override if that differs)."""
        self.turn_away(request, client_address)

    def descriptors_needed(self) -> int:
        """Descriptors this service may hold at once, for sizing the open-file limit."""
        return self.max_connections

    def log_busy(self, client_address: object) -> None:
        log.info("%s - busy", peer_text(client_address))

    # -- the reaper ----------------------------------------------------

    def service_actions(self) -> None:
        """Shut down connections that outlived `lifetime` (runs in the acceptor, at most every `poll_interval`)."""
        now = time.monotonic()
        if now < self._next_reap:
            return
        self._next_reap = now + self.poll_interval
        with self._active_lock:
            expired = [thread for thread, active in self._active.items() if active.expires <= now]
        self.shut(expired)

    def shut(self, threads: list[threading.Thread], how: int = socket.SHUT_RDWR) -> None:
        """Shut down the sockets of these connection threads: a thread blocked on one wakes."""
        with self._active_lock:
            sockets = [self._active[thread].sock for thread in threads if thread in self._active]
        for sock in sockets:
            shut_down(sock, how)


def _open_reserve() -> int | None:
    """A descriptor held only to be given up when the process runs out of them."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
