"""What the finger service says: a `Query` and a table in, reply lines out.

Pure functions, so every reply can be tested without a socket.  The fixed
texts are part of the contract (SPEC 4); `docs/behavior.md` explains each
choice and the RFC 1288 section behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fingerd.protocol import MAX_QUERY_BYTES, Kind, Query
from fingerd.users.table import Snapshot

NO_SUCH_USER = "No such user"
LIST_DENIED = "Finger online user list denied"
FORWARD_DENIED = "Finger forwarding service denied"
TOO_LONG = f"Query too long: at most {MAX_QUERY_BYTES} bytes"
BUSY = "Server busy, try again later"
TIMED_OUT = "Timed out waiting for the query"
NO_USERS = "No users listed"
NO_PLAN = "No Plan."
LIST_NAME_WIDTH = 16


@dataclass(frozen=True)
class Policy:
    """The operator's choices that change answers."""

    list_users: bool = True


@dataclass(frozen=True)
class Answer:
    """Reply lines, and a one-word outcome for the access log."""

    lines: tuple[str, ...]
    outcome: str


def answer(query: Query, snapshot: Snapshot, policy: Policy) -> Answer:
    """Answer one query from one generation of the user table."""
    if query.kind is Kind.TOO_LONG:
        return Answer((TOO_LONG,), "too-long")
    if query.kind is Kind.FORWARD:
        return Answer((FORWARD_DENIED,), "forward-denied")
    if query.kind is Kind.LIST:
        return user_list(snapshot, policy)
    return user_status(query, snapshot)


def user_list(snapshot: Snapshot, policy: Policy) -> Answer:
    """One line per user: the name, then the first line of the status."""
    if not policy.list_users:
        return Answer((LIST_DENIED,), "list-denied")
    listing = snapshot.listing()
    if not listing:
        return Answer((NO_USERS,), "list")
    width = max(LIST_NAME_WIDTH, max(len(name) for name, _ in listing))
    lines = tuple(f"{name:<{width}}  {first}".rstrip() for name, first in listing)
    return Answer(lines, "list")


def user_status(query: Query, snapshot: Snapshot) -> Answer:
    """The status of one user; verbose adds the login line and heading."""
    found = snapshot.find(query.name)
    if found is None:
        return Answer((NO_SUCH_USER,), "no-such-user")
    name, status = found
    if not query.verbose:
        return Answer(status or (NO_PLAN,), "found")
    if not status:
        return Answer((f"Login: {name}", NO_PLAN), "found")
    return Answer((f"Login: {name}", "Plan:", *status), "found")
