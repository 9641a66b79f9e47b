"""Making a forwarding hop (RFC 1288 2.4): the network half of ``name@host``.

`fingerd.finger.answer.forward_hop` decides, without the network, whether
a forwarded query may go out and where.  This module makes the hop it
decided on, in a lookup worker, with the finger client's code:

* the host is resolved once, and unless the operator listed it, every
  address it resolves to must be public (`is_public_address`); the
  connection then goes to those checked addresses, never to a second
  lookup, so a name that changes its answer in between (DNS rebinding)
  reaches nothing new;
* the whole hop, connect to last byte, is bounded by `--timeout`, and the
  reply by `reply_limit` bytes, past which it ends with a visible marker;
* at most `concurrent` hops run at once; one more is answered "busy" at
  once rather than queued, so forwards can never hold every lookup worker;
* the reply is relayed line by line and sent through `reply_bytes` like
  any other, so a hostile server's escape sequences arrive as text.

Resolving a name loads nothing after the privilege drop: every module used
here is imported at start, the IDNA codec included (`fingerd.client`
imports it, because `socket.getaddrinfo` encodes every host name with it,
ASCII or not).
"""

from __future__ import annotations

import threading
import time

from fingerd.client import FingerError, Refused, Reply, TimedOut, UnknownHost, exchange, reply_lines, resolve
from fingerd.finger.answer import (
    FORWARD_BUSY,
    FORWARD_ERROR,
    FORWARD_NOT_ALLOWED,
    FORWARD_REFUSED,
    FORWARD_TIMED_OUT,
    FORWARD_UNKNOWN_HOST,
    Answer,
    Hop,
    is_public_address,
)

TRUNCATED = "[reply truncated at {limit} bytes]"
_FAILURES = {Refused: FORWARD_REFUSED, TimedOut: FORWARD_TIMED_OUT, UnknownHost: FORWARD_UNKNOWN_HOST}


class Forwarder:
    """Makes forwarding hops, a few at a time; `relay` is the ``relay`` of `answer`."""

    concurrent = 4
    reply_limit = 64 * 1024

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(self.concurrent)

    def relay(self, hop: Hop) -> Answer:
        """Make ``hop`` if a slot is free (blocks up to the timeout); else say busy at once."""
        if not self._slots.acquire(blocking=False):
            return Answer((FORWARD_BUSY,), "forward-busy")
        try:
            return relay_once(hop, time.monotonic() + self.timeout, self.reply_limit)
        finally:
            self._slots.release()


def relay_once(hop: Hop, deadline: float, limit: int) -> Answer:
    """Resolve, check, connect to the checked addresses, and relay the reply."""
    try:
        addresses = resolve(hop.host, hop.port)
        if not hop.listed and not all(is_public_address(sockaddr[0]) for _, sockaddr in addresses):
            return Answer((FORWARD_NOT_ALLOWED,), "forward-denied")
        reply = exchange(addresses, hop.query, deadline, limit)
    except FingerError as error:
        return Answer((_FAILURES.get(type(error), FORWARD_ERROR),), "forward-failed")
    return Answer(relayed_lines(reply, limit), "forwarded")


def relayed_lines(reply: Reply, limit: int) -> tuple[str, ...]:
    """The relayed reply as lines for `reply_bytes`, with the marker when it was cut."""
    lines = [line.decode("utf-8", "backslashreplace") for line in reply_lines(reply.data)]
    if reply.truncated:
        lines.append(TRUNCATED.format(limit=limit))
    return tuple(lines)
