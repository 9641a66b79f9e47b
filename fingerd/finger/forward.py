"""Making a forwarding hop (RFC 1288 2.4): the network half of ``name@host``.

`fingerd.finger.answer.forward_hop` decides, without the network, whether
a forwarded query may go out and where.  This module makes the hop it
decided on, in the connection's own thread, with the finger client's code:

* the host is resolved once, and unless the operator listed it, every
  address it resolves to must be public (`is_public_address`); the
  connection then goes to those checked addresses, never to a second
  lookup, so a name that changes its answer in between (DNS rebinding)
  reaches nothing new;
* the whole hop, connect to last byte, is bounded by the query's deadline
  (`--timeout` after the client connected), and the reply by `reply_limit`
  bytes, past which it ends with a visible marker;
* at most `concurrent` hops run at once; one more waits for a free one
  while a hop could still be made (`least_hop_seconds` before its
  deadline), then is answered "busy", so forwards to a silent host hold
  only the threads of the queries that asked for them;
* when the daemon stops, hops still connecting or waiting for their reply
  are cut (`OpenSockets`), and their clients told so, rather than left
  waiting past the exit;
* the reply is relayed line by line and sent through `reply_bytes` like
  any other, so a hostile server's escape sequences arrive as text.

Resolving a name loads nothing after the privilege drop: every module used
here is imported at start, the IDNA codec included (`fingerd.client`
imports it, because `socket.getaddrinfo` encodes every host name with it,
ASCII or not).
"""

from __future__ import annotations

import socket
import threading
import time

from fingerd.client import FingerError, Refused, Reply, TimedOut, UnknownHost, connect, converse, reply_lines, resolve
from fingerd.finger.answer import (
    FORWARD_BUSY,
    FORWARD_ERROR,
    FORWARD_NOT_ALLOWED,
    FORWARD_REFUSED,
    FORWARD_STOPPED,
    FORWARD_TIMED_OUT,
    FORWARD_UNKNOWN_HOST,
    Answer,
    Hop,
    is_public_address,
)
from fingerd.threads import shut_down

TRUNCATED = "[reply truncated at {limit} bytes]"
_FAILURES = {Refused: FORWARD_REFUSED, TimedOut: FORWARD_TIMED_OUT, UnknownHost: FORWARD_UNKNOWN_HOST}


class OpenSockets:
    """The outbound sockets of hops in progress, so that a stop can cut them.

    A thread blocked connecting to, or reading from, a silent far end wakes
    when its socket is shut down; `cut_all` does that to every socket held,
    and to any added later.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, list[socket.socket]] = {}
        self.cut = False

    def add(self, sock: socket.socket) -> None:
        """Hold a socket of the calling thread's hop (shut at once if the cut has come)."""
        with self._lock:
            self._open.setdefault(threading.get_ident(), []).append(sock)
            if self.cut:
                shut_down(sock)

    def release(self) -> None:
        """The calling thread's hop is over: forget its sockets."""
        with self._lock:
            self._open.pop(threading.get_ident(), None)

    def cut_all(self) -> None:
        with self._lock:
            self.cut = True
            for sockets in self._open.values():
                for sock in sockets:
                    shut_down(sock)


class Forwarder:
    """Makes forwarding hops, a few at a time; `relay` is the ``relay`` of `answer`."""

    concurrent = 4
    reply_limit = 64 * 1024
    least_hop_seconds = 0.5

    def __init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.concurrent)
        self._open = OpenSockets()

    def relay(self, hop: Hop, deadline: float) -> Answer:
        """Make ``hop`` once a slot is free, all by ``deadline``; "busy" if none frees in time."""
        if not self._slots.acquire(timeout=max(0.0, deadline - self.least_hop_seconds - time.monotonic())):
            return Answer((FORWARD_BUSY,), "forward-busy")
        try:
            if self._open.cut:
                return Answer((FORWARD_STOPPED,), "forward-failed")
            return relay_once(hop, deadline, self.reply_limit, self._open)
        finally:
            self._slots.release()

    def stop(self) -> None:
        """Cut every hop still in progress: its client is told the daemon is stopping."""
        self._open.cut_all()


def relay_once(hop: Hop, deadline: float, limit: int, held: OpenSockets | None = None) -> Answer:
    """Resolve, check, connect to the checked addresses, and relay the reply."""
    try:
        addresses = resolve(hop.host, hop.port)
        if not hop.listed and not all(is_public_address(sockaddr[0]) for _, sockaddr in addresses):
            return Answer((FORWARD_NOT_ALLOWED,), "forward-denied")
        with connect(addresses, deadline, held.add if held else None) as sock:
            reply = converse(sock, hop.query, deadline, limit)
    except FingerError as error:
        if held is not None and held.cut:
            return Answer((FORWARD_STOPPED,), "forward-failed")
        return Answer((_FAILURES.get(type(error), FORWARD_ERROR),), "forward-failed")
    finally:
        if held is not None:
            held.release()
    if held is not None and held.cut:
        return Answer((FORWARD_STOPPED,), "forward-failed")
    return Answer(relayed_lines(reply, limit), "forwarded")


def relayed_lines(reply: Reply, limit: int) -> tuple[str, ...]:
    """The relayed reply as lines for `reply_bytes`, with the marker when it was cut."""
    lines = [line.decode("utf-8", "backslashreplace") for line in reply_lines(reply.data)]
    if reply.truncated:
        lines.append(TRUNCATED.format(limit=limit))
    return tuple(lines)
