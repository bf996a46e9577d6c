"""The annotation store on SQLite and PostgreSQL: quota, one ranking per annotator, undo,
resume, bad input that stores nothing, verbatim text, concurrent writers."""

from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import func, select, text

from align.errors import AlignInputError
from annotation_ui.store import AlreadyRanked, Assignment, Base, Item, NewItem, QuotaFull, RankingRow, Store
from annotation_ui.testing import sample_items

PG_URL = os.environ.get("ALIGN_TEST_PG_URL")


def _pg_store(quota: int) -> Store:
    if not PG_URL:
        pytest.skip("ALIGN_TEST_PG_URL is not set (.ci/services.sh starts PostgreSQL and prints the URL)")
    store = Store(PG_URL, quota=quota)
    Base.metadata.drop_all(store.engine)  # a clean schema per test; the app itself never drops
    Base.metadata.create_all(store.engine)
    return store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_store(request, tmp_path):
    """make_store(quota) -> an empty store on the parametrised backend."""
    made: list[Store] = []

    def make(quota: int = 2) -> Store:
        store = _pg_store(quota) if request.param == "postgres" else Store(str(tmp_path / "a.db"), quota=quota)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def _users(store: Store, *names: str) -> None:
    for name in names:
        store.add_annotator(name, "secret-pw")


def _count_rankings(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(RankingRow)).scalar_one()


def test_quota_reached_exactly_and_nobody_ranks_twice(make_store):
    store = make_store(quota=2)
    _users(store, "a", "b", "c")
    store.add_items(sample_items(3))
    seen: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    progress = True
    while progress:
        progress = False
        for name in seen:
            view = store.next_item(name)
            if view is not None:
                store.submit(name, view.item_id, [1, 2, 3])
                seen[name].append(view.item_id)
                progress = True
    per_item: dict[int, int] = {}
    for name, items in seen.items():
        assert len(items) == len(set(items)), f"{name} got an item twice"
        for item in items:
            per_item[item] = per_item.get(item, 0) + 1
    assert sorted(per_item.values()) == [2, 2, 2]
    assert store.overview()["items_complete"] == 3
    assert all(store.next_item(name) is None for name in seen)


def test_submit_refuses_over_quota_and_duplicates(make_store):
    store = make_store(quota=1)
    _users(store, "a", "b")
    store.add_items(sample_items(1))
    view_a = store.next_item("a")
    assert store.next_item("b") is None  # the only slot is reserved by a's open assignment
    store.submit("a", view_a.item_id, [2, 1, 3])
    with pytest.raises((AlreadyRanked, AlignInputError)):
        store.submit("a", view_a.item_id, [1, 2, 3])
    with pytest.raises(QuotaFull):
        store.submit("b", view_a.item_id, [1, 2, 3])
    assert _count_rankings(store) == 1


def test_undo_supersedes_and_hands_the_item_back(make_store):
    store = make_store(quota=2)
    _users(store, "a")
    store.add_items(sample_items(2))
    first = store.next_item("a")
    store.submit("a", first.item_id, [1, 2, 3])
    assert store.undo_last("a") == first.item_id
    again = store.next_item("a")
    assert again.item_id == first.item_id  # the undone item comes back to be ranked again
    new_id = store.submit("a", again.item_id, [3, 2, 1])
    everything = store.rankings(include_superseded=True)
    assert len(everything) == 2 and _count_rankings(store) == 2  # nothing deleted
    active = store.rankings()
    assert [r.ranks for r in active] == [[3, 2, 1]] and active[0].ranking_id == new_id
    with store.engine.connect() as conn:
        old = conn.execute(select(RankingRow).where(RankingRow.superseded_at.is_not(None))).one()
    assert old.superseded_by == new_id
    store.add_annotator("idle", "secret-pw")
    assert store.undo_last("idle") is None


def test_resume_after_reopening_the_database(make_store):
    store = make_store(quota=2)
    _users(store, "a")
    store.add_items(sample_items(3))
    current = store.next_item("a")
    reopened = Store(store.url, quota=2)
    try:
        assert reopened.next_item("a").item_id == current.item_id
        assert reopened.progress("a").done == 0
    finally:
        reopened.close()


def test_skip_is_not_offered_again(make_store):
    store = make_store(quota=2)
    _users(store, "a")
    store.add_items(sample_items(2))
    first = store.next_item("a")
    store.skip("a", first.item_id)
    second = store.next_item("a")
    assert second.item_id != first.item_id
    store.submit("a", second.item_id, [1, 1, 2])
    assert store.next_item("a") is None


def test_bad_input_stores_nothing(make_store):
    store = make_store(quota=2)
    _users(store, "a")
    store.add_items(sample_items(2))
    before = store.item_ids()
    with pytest.raises(AlignInputError, match="duplicate item id"):
        store.add_items(sample_items(2, prefix="new") + sample_items(1, prefix="new"))
    with pytest.raises(AlignInputError, match="already in the database"):
        store.add_items(sample_items(1, prefix="fresh") + sample_items(1))
    with pytest.raises(AlignInputError, match="at least 2"):
        store.add_items([NewItem("p", ["only one"], "single")])
    with pytest.raises(AlignInputError, match="at most 26"):
        store.add_items([NewItem("p", [f"r{i}" for i in range(27)], "huge")])
    assert store.largest_item() == 3
    assert store.item_ids() == before
    view = store.next_item("a")
    with pytest.raises(AlignInputError, match="2 ranks for 3 responses"):
        store.submit("a", view.item_id, [1, 2])
    with pytest.raises(AlignInputError, match="ranks go from 1"):
        store.submit("a", view.item_id, [0, 1, 2])
    assert _count_rankings(store) == 0
    assert store.next_item("a").item_id == view.item_id  # the failed submits left the assignment open


def test_sql_looking_text_is_stored_verbatim(make_store):
    store = make_store()
    evil_name = "robert'); DROP TABLE annotators;--"
    store.add_annotator(evil_name, "secret-pw")
    prompt = "x'; DELETE FROM items; -- <script>alert(1)</script>"
    store.add_items([NewItem(prompt, ["1 OR 1=1", "\"; UPDATE rankings SET ranks='[]'"], "id'); --")])
    view = store.next_item(evil_name)
    store.submit(evil_name, view.item_id, [1, 2], comment="'); DROP TABLE rankings; --")
    record = store.rankings()[0]
    assert (record.prompt, record.responses, record.annotator, record.external_id) == (
        prompt,
        ["1 OR 1=1", "\"; UPDATE rankings SET ranks='[]'"],
        evil_name,
        "id'); --",
    )
    assert record.comment == "'); DROP TABLE rankings; --"


def test_login_checks_password(make_store):
    store = make_store()
    store.add_annotator("a", "right-pw")
    assert store.check_login("a", "right-pw")
    assert not store.check_login("a", "wrong-pw")
    assert not store.check_login("ghost", "right-pw")
    with pytest.raises(AlignInputError, match="already exists"):
        store.add_annotator("a", "other-pw")
    assert store.check_login("a", "right-pw")  # the refused add changed nothing


def test_concurrent_writers_hold_the_quota(make_store):
    """24 threads race through next_item/submit on 30 items with quota 3: exactly 90 rankings."""
    store = make_store(quota=3)
    names = [f"t{i}" for i in range(24)]
    _users(store, *names)
    store.add_items(sample_items(30, k=2))
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            while (view := store.next_item(name)) is not None:
                store.submit(name, view.item_id, [1, 2])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    records = store.rankings()
    pairs = [(r.item_id, r.annotator) for r in records]
    assert len(pairs) == len(set(pairs)) == 90
    counts: dict[int, int] = {}
    for item, _ in pairs:
        counts[item] = counts.get(item, 0) + 1
    assert set(counts.values()) == {3} and len(counts) == 30


def test_abandoned_reservation_expires(make_store):
    """An item handed out and then left alone stops holding its quota slot after the lease."""
    store = make_store(quota=1)
    store.lease_seconds = 0.2
    _users(store, "a", "b")
    store.add_items(sample_items(1))
    held = store.next_item("a")
    assert store.next_item("b") is None  # reserved by a
    import time

    time.sleep(0.3)
    taken = store.next_item("b")
    assert taken is not None and taken.item_id == held.item_id
    store.submit("b", taken.item_id, [1, 2, 3])
    with pytest.raises(QuotaFull):  # a comes back too late: the quota still holds
        store.submit("a", held.item_id, [1, 2, 3])
    assert store.next_item("a") is None


def test_lapsed_lease_is_not_resumed_when_someone_else_holds_the_slot(make_store):
    store = make_store(quota=1)
    store.lease_seconds = 0.2
    _users(store, "a", "b")
    store.add_items(sample_items(2))
    held = store.next_item("a")
    import time

    time.sleep(0.3)
    taken = store.next_item("b")
    assert taken.item_id == held.item_id  # a's lease lapsed, b holds the slot now
    moved = store.next_item("a")
    assert moved is not None and moved.item_id != held.item_id  # a moves on instead of competing


def test_database_hand_out_follows_the_pick_next_policy(make_store):
    """The hand-out query is handout.pick_next done in SQL: at every step of a random session
    (fetches, submits, skips, abandoned items), the item handed out is the one pick_next
    chooses from the same candidates, and progress counts what the candidates say."""
    import random

    from annotation_ui import assignment as handout
    from annotation_ui.store import now

    store = make_store(quota=3)
    names = [f"p{i}" for i in range(6)]
    _users(store, *names)
    store.add_items(sample_items(25, k=2))
    rng = random.Random(3)
    checked = 0
    for _ in range(120):
        name = rng.choice(names)
        with store._read() as s:
            me = store._annotator_id(s, name)
            candidates = store._candidates(s, me, now())
            has_open = s.scalar(select(func.count()).where(Assignment.annotator_id == me, Assignment.status == "open"))
        expected = handout.pick_next(candidates, store.quota)
        view = store.next_item(name)
        if not has_open:  # a fresh hand-out (an open item is resumed instead)
            assert (view.item_id if view else None) == (expected.item_id if expected else None)
            checked += 1
        if view is None:
            continue
        action = rng.random()
        if action < 0.6:
            store.submit(name, view.item_id, [1, 2])
        elif action < 0.75:
            store.skip(name, view.item_id)
        # else: left open (a reservation others must count)
    assert checked > 30
    with store._read() as s:
        candidates = store._candidates(s, store._annotator_id(s, names[0]), now())
    current = store.next_item(names[0])  # resumes or hands out; progress counts that item
    progress = store.progress(names[0])
    assert progress.available == sum(
        1 for c in candidates if handout.has_room(c, store.quota) or (current and c.item_id == current.item_id)
    )


def test_item_counts_are_kept_by_the_database(make_store):
    """items.n_active (what the hand-out reads) equals the active rankings after submits and undos."""
    store = make_store(quota=2)
    for name in ("a", "b", "c"):
        store.add_annotator(name, "password-1")
    store.add_items(sample_items(3))
    for name in ("a", "b", "c", "a"):
        store.submit(name, store.next_item(name).item_id, [1, 2, 3])
    store.undo_last("b")
    with store.engine.connect() as c:
        kept = dict(c.execute(select(Item.id, Item.n_active)).all())
        real = dict(
            c.execute(
                select(RankingRow.item_id, func.count()).where(RankingRow.superseded_at.is_(None)).group_by("item_id")
            ).all()
        )
    assert kept == {i: real.get(i, 0) for i in kept} and sum(kept.values()) == 3


@pytest.mark.postgres
def test_a_connection_the_database_dropped_is_retried_once():
    """No pre-ping: when PostgreSQL drops the pool's connections (a restart, an idle timeout),
    the next call fails on its first statement and is run again on a fresh connection."""
    store = _pg_store(quota=2)
    store.add_annotator("a", "password-1")
    store.add_items(sample_items(2))
    first, _ = store.fetch("a")  # the pools now hold live connections
    with store.engine.connect() as c:
        dropped = c.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid() AND usename = current_user"
            )
        ).scalar_one()
    assert dropped >= 1
    again, progress = store.fetch("a")  # both pools' connections are dead now
    assert again.item_id == first.item_id and progress.done == 0
    store.submit("a", again.item_id, [1, 2, 3])
    assert [r.item_id for r in store.rankings()] == [first.item_id]
    store.close()
