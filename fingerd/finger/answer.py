"""What the finger service says: a `Query` and the directory in, reply lines out.

The fixed texts are part of the protocol; `docs/behavior.md` ("Answering")
explains each choice and the RFC 1288 section behind it.  Nothing here
touches a socket, so every reply can be tested without one; the layout of a
user's reply belongs to the source that knew the user (`fingerd.sources`).
A forwarded query is decided here too (`forward_hop`: the hop to make, or
why not); making the hop is the caller's ``relay`` (`fingerd.finger.forward`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fingerd.client import DEFAULT_PORT, Target, split_host_port
from fingerd.protocol import MAX_QUERY_BYTES, Kind, Query, is_valid_name
from fingerd.sources.base import NO_PLAN, WhoIsOn
from fingerd.sources.directory import Directory, Listing, Lookup

NO_SUCH_USER = "No such user"
LIST_DENIED = "Finger online user list denied"
FORWARD_DENIED = "Finger forwarding service denied"
TOO_LONG = f"Query too long: at most {MAX_QUERY_BYTES} bytes"
BUSY = "Server busy, try again later"
TIMED_OUT = "Timed out waiting for the query"
NO_USERS = "No users listed"
LOOKUP_FAILED = "Lookup failed, try again later"
FORWARD_NOT_ALLOWED = "Forwarding denied: host not allowed"
FORWARD_TOO_MANY_HOPS = "Forwarding denied: too many hops (at most {hops})"
FORWARD_BAD_QUERY = "Forwarding denied: not a user name and host"
FORWARD_REFUSED = "Forwarding failed: connection refused"
FORWARD_TIMED_OUT = "Forwarding failed: timed out"
FORWARD_UNKNOWN_HOST = "Forwarding failed: unknown host"
FORWARD_ERROR = "Forwarding failed: network error"
FORWARD_BUSY = "Forwarding busy, try again later"
FORWARD_STOPPED = "Forwarding failed: server stopping, try again later"
LIST_NAME_WIDTH = 16
LIST_STATUS_WIDTH = 200
CUT_MARK = "..."

__all__ = [
    "NO_PLAN",
    "Answer",
    "Hop",
    "Policy",
    "answer",
    "answer_now",
    "forward_hop",
    "is_public_address",
    "list_status",
    "user_list",
    "user_status",
]


@dataclass(frozen=True)
class Policy:
    """The operator's choices that change answers.

    ``forward_allow`` holds host names and addresses in the canonical form
    of `fingerd.client.parse_host`.  When it is empty, forwarding may reach
    public addresses on port 79 only; when it is not, only the hosts it
    lists (on any port, whatever their addresses).
    """

    list_users: bool = True
    forwarding: bool = False
    forward_max_hops: int = 1
    forward_allow: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Answer:
    """Reply lines, and a one-word outcome for the access log."""

    lines: tuple[str, ...]
    outcome: str


@dataclass(frozen=True)
class Hop:
    """The one connection a forwarded query makes: where, and the query line sent there.

    ``listed`` is True when the operator named the host in `--forward-allow`;
    otherwise every address it resolves to must be public.
    """

    host: str
    port: int
    query: bytes
    listed: bool


Relay = Callable[[Hop, float], Answer]
"""Makes a hop by a deadline (`fingerd.finger.forward.Forwarder.relay`)."""


def answer(
    query: Query, directory: Directory, policy: Policy, relay: Relay | None = None, deadline: float | None = None
) -> Answer:
    """Answer one query, asking every source it takes and making a forwarding hop (may block).

    Without a ``relay`` nothing is forwarded: a hop is refused as if
    forwarding were off.  The sources are asked, and the hop made, until
    ``deadline`` (a `time.monotonic` value; `Directory.timeout` from now
    when None).
    """
    deadline = directory.deadline(deadline)
    result = _answer(query, directory, policy, wait=True, deadline=deadline)
    if isinstance(result, Hop):
        return relay(result, deadline) if relay is not None else Answer((FORWARD_DENIED,), "forward-denied")
    assert result is not None, "a waiting lookup always answers"
    return result


def answer_now(query: Query, directory: Directory, policy: Policy) -> Answer | None:
    """Answer one query from memory, or None when a source that may block, or a forwarding hop, is needed.

    A forwarding refusal needs neither the network nor a source, so it is
    answered here; only a hop that will be made returns None.
    """
    result = _answer(query, directory, policy, wait=False)
    return None if isinstance(result, Hop) else result


def _answer(
    query: Query, directory: Directory, policy: Policy, wait: bool, deadline: float | None = None
) -> Answer | Hop | None:
    if query.kind is Kind.TOO_LONG:
        return Answer((TOO_LONG,), "too-long")
    if query.kind is Kind.FORWARD:
        return forward_hop(query, policy)
    if query.kind is Kind.LIST:
        if not policy.list_users:
            return Answer((LIST_DENIED,), "list-denied")
        on = directory.who(wait, deadline)
        heading = on if on is not None and on.heads_list else None
        listing = directory.listing(wait, deadline, without=heading.source if heading is not None else "")
        return None if listing is None else user_list(listing, heading)
    found = directory.lookup(query.name, wait, deadline)
    return None if found is None else user_status(query, found)


def user_list(listing: Listing, on: WhoIsOn | None = None) -> Answer:
    """Who is logged in (the sessions table, from passwd), then one line per user the other sources list.

    A user's line is the name, then the first line of the status (see
    `list_status`).  The table's own source is left out of ``listing`` by
    the caller, so a user in the status file keeps their line even while
    logged in.
    """
    rest = listing
    lines = list(on.lines) if on is not None else []
    if rest:
        width = max(LIST_NAME_WIDTH, max(len(name) for name, _ in rest))
        lines += [f"{name:<{width}}  {list_status(status)}".rstrip() for name, status in rest]
    return Answer(tuple(lines) or (NO_USERS,), "list")


def list_status(status: Sequence[str]) -> str:
    """The first line of a status as a list shows it: at most `LIST_STATUS_WIDTH` characters.

    Every listing carries every user's line, so one long status would make
    each list long; a cut line ends in `CUT_MARK`, plain ASCII so that any
    client shows it.  The whole status is one query away.
    """
    first = status[0] if status else ""
    if len(first) <= LIST_STATUS_WIDTH:
        return first
    return first[: LIST_STATUS_WIDTH - len(CUT_MARK)] + CUT_MARK


def user_status(query: Query, found: Lookup) -> Answer:
    """One user's reply, short or verbose as the source lays it out."""
    record = found.record
    if record is None:
        if found.failed:
            return Answer((LOOKUP_FAILED,), "lookup-failed")
        return Answer((NO_SUCH_USER,), "no-such-user")
    return Answer(record.verbose if query.verbose else record.short, "found")


def forward_hop(query: Query, policy: Policy) -> Hop | Answer:
    """Decide a forwarded query without touching the network (RFC 1288 2.4, 3.2.1).

    The rightmost host is asked, with the rest of the query: ``name@h1@h2``
    becomes ``name@h1`` sent to h2.  Refused: forwarding off, a chain longer
    than ``forward_max_hops``, a name that is not a user name (so the line
    sent elsewhere is never arbitrary text), a host that is not a host, and
    a host the allow-list does not let through.  Addresses a name resolves
    to are checked later, by the relay, against the same rule.
    """
    if not policy.forwarding:
        return Answer((FORWARD_DENIED,), "forward-denied")
    if len(query.hosts) > policy.forward_max_hops:
        return Answer((FORWARD_TOO_MANY_HOPS.format(hops=policy.forward_max_hops),), "forward-denied")
    if query.name and not is_valid_name(query.name):
        return Answer((FORWARD_BAD_QUERY,), "forward-denied")
    try:
        for via in query.hosts[:-1]:
            split_host_port(via)
        host, port = split_host_port(query.hosts[-1])
    except ValueError:
        return Answer((FORWARD_BAD_QUERY,), "forward-denied")
    listed = host in policy.forward_allow
    if not listed and not _may_reach_unlisted(host, port, policy):
        return Answer((FORWARD_NOT_ALLOWED,), "forward-denied")
    line = Target(query.name, query.hosts[:-1], host, port, query.verbose).query()
    return Hop(host, port, line, listed)


def _may_reach_unlisted(host: str, port: int, policy: Policy) -> bool:
    """Without an allow-list: port 79 of a public address (or of a name, checked once resolved)."""
    if policy.forward_allow or port != DEFAULT_PORT:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return is_public_address(host)


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address.

    False for loopback, private, shared (carrier NAT), link-local,
    deprecated site-local (``fec0::/10``), multicast, unspecified,
    documentation and reserved addresses, and for
    IPv4-mapped and 6to4 IPv6 addresses that carry one of those.
    """
    ip = ipaddress.ip_address(address.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return is_public_address(str(embedded))
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    return ip.is_global and not ip.is_multicast and not ip.is_reserved and not site_local
