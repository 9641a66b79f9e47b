"""Unit, property and concurrency tests for fingerd.users.table (UserTable, Snapshot)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fingerd.sources.file import FileSource
from fingerd.users.table import Snapshot, UserTable

FIRST = "abcXYZ019_"
REST = FIRST + ".-"
names = st.one_of(
    st.sampled_from(["alice", "Alice", "ALICE", "bob", "Bob", "0", "a.b"]),
    st.builds(str.__add__, st.sampled_from(FIRST), st.text(alphabet=REST, max_size=31)),
)
statuses = st.lists(st.text(max_size=20), max_size=3).map(tuple)
tables = st.dictionaries(names, statuses, max_size=12)


@pytest.fixture
def table() -> UserTable:
    table = UserTable()
    table.replace({"alice": ("Writing",), "bob": ("Out to lunch", "back at 2"), "carol": ()})
    return table


# replace and snapshot


def test_new_table_is_empty():
    snapshot = UserTable().snapshot()
    assert dict(snapshot.users) == {}
    assert snapshot.generation == 0
    assert FileSource(UserTable()).names() == []
    assert snapshot.lookup("alice") is None


def test_replace_publishes_and_returns_the_snapshot():
    table = UserTable()
    published = table.replace({"alice": ("hi",)})
    assert table.snapshot() is published
    assert dict(published.users) == {"alice": ("hi",)}


def test_replace_counts_generations():
    table = UserTable()
    generations = [table.replace({}).generation for _ in range(3)]
    assert generations == [1, 2, 3]


def test_replace_drops_users_not_in_the_new_table(table):
    table.replace({"dave": ("new",)})
    assert table.lookup("alice") is None
    assert table.lookup("dave") == ("dave", ("new",))


def test_snapshot_is_not_changed_by_a_later_replace(table):
    before = table.snapshot()
    table.replace({})
    assert before.lookup("alice") == ("alice", ("Writing",))
    assert table.lookup("alice") is None


def test_snapshot_is_not_changed_by_editing_the_input():
    users = {"alice": ("hi",)}
    table = UserTable()
    snapshot = table.replace(users)
    users["mallory"] = ("sneaked in",)
    del users["alice"]
    assert dict(snapshot.users) == {"alice": ("hi",)}
    assert table.lookup("mallory") is None


def test_snapshot_is_read_only(table):
    snapshot = table.snapshot()
    with pytest.raises(TypeError):
        snapshot.users["mallory"] = ("x",)
    with pytest.raises(TypeError):
        snapshot.folded["mallory"] = "mallory"
    with pytest.raises(AttributeError):
        snapshot.generation = 99


# lookup


def test_lookup_exact(table):
    assert table.lookup("bob") == ("bob", ("Out to lunch", "back at 2"))


def test_lookup_empty_status_is_found(table):
    assert table.lookup("carol") == ("carol", ())


def test_lookup_unknown(table):
    assert table.lookup("dave") is None
    assert table.lookup("") is None


@pytest.mark.parametrize("query", ["ALICE", "Alice", "aLiCe"])
def test_lookup_case_folded_fallback(table, query):
    assert table.lookup(query) == ("alice", ("Writing",))


def test_lookup_fallback_returns_the_real_name():
    table = UserTable()
    table.replace({"McGregor": ("garden",)})
    assert table.lookup("mcgregor") == ("McGregor", ("garden",))
    assert table.lookup("MCGREGOR") == ("McGregor", ("garden",))


def test_lookup_ambiguous_fold_needs_the_exact_name():
    table = UserTable()
    table.replace({"alice": ("lower",), "Alice": ("upper",), "bob": ("b",)})
    assert table.lookup("alice") == ("alice", ("lower",))
    assert table.lookup("Alice") == ("Alice", ("upper",))
    assert table.lookup("ALICE") is None
    assert table.lookup("BOB") == ("bob", ("b",))


def test_lookup_does_not_match_prefixes(table):
    assert table.lookup("ali") is None
    assert table.lookup("alice2") is None
    assert table.lookup("alice ") is None


def test_snapshot_lookup_on_a_bare_snapshot():
    assert Snapshot().lookup("alice") is None


# listing


def test_file_source_lists_sorted_with_whole_statuses(table):
    assert [name for name, _ in FileSource(table).names()] == ["alice", "bob", "carol"]
    assert dict(FileSource(table).names())["carol"] == ()


def test_listing_sorts_by_name_not_insertion():
    table = UserTable()
    table.replace({"zed": ("z",), "amy": ("a",), "Bob": ("b",)})
    assert [name for name, _ in FileSource(table).names()] == ["Bob", "amy", "zed"]


# properties


@given(tables)
def test_every_user_is_found_by_exact_name(users):
    snapshot = UserTable().replace(users)
    for name, status in users.items():
        assert snapshot.lookup(name) == (name, status)


@given(tables, names)
def test_lookup_finds_only_matching_names(users, query):
    found = UserTable().replace(users).lookup(query)
    if found is None:
        assert query not in users
    else:
        real, status = found
        assert users[real] == status
        assert real == query or real.casefold() == query.casefold()


@given(tables, names)
def test_unambiguous_fold_always_found(users, query):
    matches = [name for name in users if name.casefold() == query.casefold()]
    found = UserTable().replace(users).lookup(query)
    if query in users or len(matches) == 1:
        assert found is not None
    elif not matches:
        assert found is None


@given(tables)
def test_listing_has_one_row_per_user(users):
    table = UserTable()
    table.replace(users)
    listing = FileSource(table).names()
    assert [name for name, _ in listing] == sorted(users)
    for name, status in listing:
        assert status == users[name]


# concurrency


def consistent_table(generation: int, size: int) -> dict[str, tuple[str, ...]]:
    """A table whose every entry names its generation, so a mix is detectable."""
    return {f"user{index}": (f"gen {generation}", f"size {size}") for index in range(size)}


def check_consistent(snapshot: Snapshot) -> None:
    statuses = set(snapshot.users.values())
    assert len(statuses) <= 1, f"mixed generations: {sorted(statuses)[:3]}"
    if statuses:
        (status,) = statuses
        assert status == (f"gen {snapshot.generation}", f"size {len(snapshot.users)}")
        assert snapshot.lookup("USER0") == ("user0", status)


def test_readers_never_see_a_partial_table():
    table = UserTable()
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0] * 4

    def reader(slot: int) -> None:
        try:
            last = 0
            while not stop.is_set():
                snapshot = table.snapshot()
                check_consistent(snapshot)
                assert snapshot.generation >= last
                last = snapshot.generation
                reads[slot] += 1
        except BaseException as error:
            errors.append(error)
            stop.set()

    threads = [threading.Thread(target=reader, args=(slot,)) for slot in range(len(reads))]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 1.0
        generation = 0
        while time.monotonic() < deadline and not stop.is_set():
            generation += 1
            published = table.replace(consistent_table(generation, 50 + generation % 150))
            assert published.generation == generation
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    assert not errors, errors[0]
    assert generation > 10
    assert all(count > 0 for count in reads)
    check_consistent(table.snapshot())


def test_lookups_do_not_wait_for_a_slow_table_build():
    table = UserTable()
    table.replace({"alice": ("old",)})
    building = threading.Event()
    release = threading.Event()

    class SlowMapping(Mapping):
        def __init__(self, users):
            self.users = users

        def keys(self):
            building.set()
            release.wait(5)
            return self.users.keys()

        def __getitem__(self, name):
            return self.users[name]

        def __iter__(self):
            return iter(self.keys())

        def __len__(self):
            return len(self.users)

    writer = threading.Thread(target=table.replace, args=(SlowMapping({"alice": ("new",)}),))
    writer.start()
    try:
        assert building.wait(5)
        started = time.monotonic()
        assert table.lookup("alice") == ("alice", ("old",))
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        writer.join(5)
    assert table.lookup("alice") == ("alice", ("new",))


def test_unicode_case_folding_does_not_reach_ascii_names():
    table = UserTable()
    table.replace({"k": ("kay",), "ff": ("double f",)})
    assert table.lookup("\u212a") is None
    assert table.lookup("\ufb00") is None
    assert table.lookup("K") == ("k", ("kay",))
