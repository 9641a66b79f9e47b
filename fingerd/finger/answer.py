"""What the finger service says: a `Query` and the directory in, reply lines out.

The fixed texts are part of the contract (SPEC 4); `docs/behavior.md`
explains each choice and the RFC 1288 section behind it.  Nothing here
touches a socket, so every reply can be tested without one; the layout of a
user's reply belongs to the source that knew the user (`fingerd.sources`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fingerd.protocol import MAX_QUERY_BYTES, Kind, Query
from fingerd.sources.base import NO_PLAN
from fingerd.sources.directory import Directory, Listing, Lookup

NO_SUCH_USER = "No such user"
LIST_DENIED = "Finger online user list denied"
FORWARD_DENIED = "Finger forwarding service denied"
TOO_LONG = f"Query too long: at most {MAX_QUERY_BYTES} bytes"
BUSY = "Server busy, try again later"
TIMED_OUT = "Timed out waiting for the query"
NO_USERS = "No users listed"
LOOKUP_FAILED = "Lookup failed, try again later"
LIST_NAME_WIDTH = 16

__all__ = ["NO_PLAN", "Answer", "Policy", "answer", "answer_now", "user_list", "user_status"]


@dataclass(frozen=True)
class Policy:
    """The operator's choices that change answers."""

    list_users: bool = True


@dataclass(frozen=True)
class Answer:
    """Reply lines, and a one-word outcome for the access log."""

    lines: tuple[str, ...]
    outcome: str


def answer(query: Query, directory: Directory, policy: Policy) -> Answer:
    """Answer one query, asking every source it takes (may block)."""
    result = _answer(query, directory, policy, wait=True)
    assert result is not None, "a waiting lookup always answers"
    return result


def answer_now(query: Query, directory: Directory, policy: Policy) -> Answer | None:
    """Answer one query from memory, or None when a source that may block is needed."""
    return _answer(query, directory, policy, wait=False)


def _answer(query: Query, directory: Directory, policy: Policy, wait: bool) -> Answer | None:
    if query.kind is Kind.TOO_LONG:
        return Answer((TOO_LONG,), "too-long")
    if query.kind is Kind.FORWARD:
        return Answer((FORWARD_DENIED,), "forward-denied")
    if query.kind is Kind.LIST:
        if not policy.list_users:
            return Answer((LIST_DENIED,), "list-denied")
        listing = directory.listing(wait)
        return None if listing is None else user_list(listing)
    found = directory.lookup(query.name, wait)
    return None if found is None else user_status(query, found)


def user_list(listing: Listing) -> Answer:
    """One line per user: the name, then the first line of the status."""
    if not listing:
        return Answer((NO_USERS,), "list")
    width = max(LIST_NAME_WIDTH, max(len(name) for name, _ in listing))
    lines = tuple(f"{name:<{width}}  {status[0] if status else ''}".rstrip() for name, status in listing)
    return Answer(lines, "list")


def user_status(query: Query, found: Lookup) -> Answer:
    """One user's reply, short or verbose as the source lays it out."""
    record = found.record
    if record is None:
        if found.failed:
            return Answer((LOOKUP_FAILED,), "lookup-failed")
        return Answer((NO_SUCH_USER,), "no-such-user")
    return Answer(record.verbose if query.verbose else record.short, "found")
