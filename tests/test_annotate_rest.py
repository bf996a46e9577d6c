"""The plain JSON API (/api/v1): signed in by the page's login, the same Service and checks as
the page and gradio_client, one clear error per refusal; and its store beneath (counts kept by
the database's triggers, a dead connection retried, an older database upgraded in place)."""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from annotation_ui.guard import origin_of
from annotation_ui.store import Store
from annotation_ui.testing import HttpAnnotator, running_app, sample_items

PASSWORD = "pw-secret"


@pytest.fixture
def store(tmp_path):
    store = Store(str(tmp_path / "app.db"), quota=2)
    for name in ("alice", "bob"):
        store.add_annotator(name, PASSWORD)
    store.add_annotator("root", PASSWORD, role="admin")
    store.add_items(sample_items(3))
    yield store
    store.close()


def test_not_signed_in_gets_401_and_no_item(store):
    with running_app(store) as url:
        for name in ("fetch", "submit", "progress", "admin_overview"):
            response = httpx.post(f"{url}api/v1/{name}", json={}, headers={"Origin": origin_of(url)})
            assert response.status_code == 401, name
            assert "not signed in" in response.json()["error"]
        forged = httpx.post(
            f"{url}api/v1/fetch", json={}, cookies={"access-token-x": "made-up"}, headers={"Origin": origin_of(url)}
        )
        assert forged.status_code == 401
    assert store.progress("alice").done == 0 and store.rankings() == []


def test_fetch_submit_undo_through_the_rest_api(store):
    with running_app(store) as url:
        alice = HttpAnnotator(url, "alice", PASSWORD)
        item = alice.call("fetch")
        assert item["progress"] == {"done": 0, "available": 3, "items_left": 3, "total_items": 3}
        shown = item["responses"]
        result = alice.call("submit", item["item_id"], [3, 1, 2], False, "fine")
        stored = store.rankings(annotator="alice")[0]
        assert stored.ranks[stored.responses.index(shown[1])] == 1  # shown order mapped back
        assert result == {"ranking_id": stored.ranking_id, "item_id": item["item_id"]}
        assert alice.call("progress")["done"] == 1
        assert alice.call("my_rankings")[0]["ranks"] == [3, 1, 2]
        assert alice.call("undo") == {"undone_item_id": item["item_id"]}
        assert store.rankings(annotator="alice") == []
        alice.close()


def test_refusals_are_400_with_the_pages_message_and_store_nothing(store):
    with running_app(store) as url:
        alice = HttpAnnotator(url, "alice", PASSWORD)
        mine = alice.call("fetch")["item_id"]
        other = next(i for i in (1, 2, 3) if i != mine)  # the fresh database's item ids
        refusals = [
            (("submit", mine, [1, 2], False, ""), "2 ranks for 3 responses"),
            (("submit", "abc", [1, 2, 3], False, ""), "item_id must be a whole number"),
            (("submit", mine, [1, 2, 9], False, ""), "ranks go from 1 (best) to 3"),
            (("submit", other, [1, 2, 3], False, ""), "is not assigned to alice"),
            (("admin_overview",), "admin only"),
        ]
        for (name, *args), message in refusals:
            with pytest.raises(RuntimeError, match="failed \\(400\\)") as refused:
                alice.call(name, *args)
            assert message in str(refused.value), (name, args)
        assert store.rankings() == []
        root = HttpAnnotator(url, "root", PASSWORD)
        assert root.call("admin_overview")["items"] == 3
        for client in (alice, root):
            client.close()


def test_malformed_bodies_and_wrong_routes_get_one_clear_error_and_store_nothing(store):
    with running_app(store) as url:
        alice = HttpAnnotator(url, "alice", PASSWORD)
        mine = alice.call("fetch")["item_id"]
        post = lambda name, **kw: alice.http.post(f"api/v1/{name}", **kw)  # noqa: E731
        cases = [
            (
                post("submit", content=b"{item_id: 3", headers={"Content-Type": "application/json"}),
                400,
                "submit: the body is not JSON; send a JSON object such as",
            ),
            (post("submit", json=[mine, [1, 2, 3]]), 400, "submit: the body is a JSON list"),
            (
                post("submit", json={"item_id": mine, "rank": [1, 2, 3]}),
                400,
                "unknown field 'rank'; it takes item_id, ranks",
            ),
            (
                post("submit", json={"item_id": mine, "ranks": [1, 2, 3], "all_bad": "no"}),
                400,
                'all_bad takes true or false, not "no"',
            ),
            (
                post("submit", json={"item_id": mine, "ranks": [1, 2, 3], "comment": 5}),
                400,
                "comment takes a string, not 5",
            ),
            (post("fetch", json={"item_id": 1}), 400, "fetch: unknown field 'item_id'; it takes no fields"),
            (post("rank", json={}), 404, "no route 'rank'; routes: fetch, submit"),
            (alice.http.get("api/v1/fetch"), 405, "fetch takes POST"),
        ]
        for response, status, message in cases:
            assert response.status_code == status, response.text
            assert message in response.json()["error"]
        assert store.rankings() == []
        # omitted optional fields take their defaults
        assert alice.http.post("api/v1/submit", json={"item_id": mine, "ranks": [1, 2, 3]}).status_code == 200
        assert [(r.all_bad, r.comment) for r in store.rankings()] == [(False, "")]
        alice.close()


def test_item_counts_follow_submit_and_undo_by_trigger(store):
    """n_active is kept by the database itself, whoever writes the rankings."""
    view = store.next_item("alice")
    store.submit("alice", view.item_id, [1, 2, 3])
    counts = lambda: dict(sqlite3.connect(store.url.split("///")[1]).execute("SELECT id, n_active FROM items"))  # noqa: E731
    assert counts()[view.item_id] == 1
    store.undo_last("alice")
    assert counts()[view.item_id] == 0
    store.submit("alice", store.next_item("alice").item_id, [2, 1, 3])
    assert counts()[view.item_id] == 1
    # a ranking written behind the store's back is counted too
    with sqlite3.connect(store.url.split("///")[1]) as db:
        db.execute(
            "INSERT INTO rankings (item_id, annotator_id, ranks, all_bad, comment, created_at)"
            " VALUES (?, 3, '[1,2,3]', 0, '', '2026-12-01')",  # root's
            (view.item_id,),
        )
    assert counts()[view.item_id] == 2
    with pytest.raises(Exception, match="already has its 2 rankings"):
        store.submit("bob", view.item_id, [1, 2, 3])


def test_an_older_database_is_upgraded_in_place(tmp_path):
    """A database written before items had n_active (and before the triggers) keeps every
    ranking and gets correct counts on first open."""
    path = tmp_path / "old.db"
    store = Store(str(path), quota=2)
    store.add_annotator("alice", PASSWORD)
    store.add_annotator("bob", PASSWORD)
    store.add_items(sample_items(2))
    for name in ("alice", "bob"):
        store.submit(name, store.next_item(name).item_id, [1, 2, 3])
    first = store.rankings()[0].item_id
    store.close()
    with sqlite3.connect(path) as db:  # what the previous version's schema looked like
        db.execute("DROP TRIGGER rankings_count_insert")
        db.execute("DROP TRIGGER rankings_count_update")
        db.execute("DROP INDEX ix_open_assignments_by_item")
        db.execute("ALTER TABLE items DROP COLUMN n_active")
    reopened = Store(str(path), quota=2)
    with sqlite3.connect(path) as db:
        assert dict(db.execute("SELECT id, n_active FROM items"))[first] == 2
        assert {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")} == {
            "rankings_count_insert",
            "rankings_count_update",
        }
    assert len(reopened.rankings()) == 2
    assert reopened.next_item("alice").item_id != first  # the full item is not handed out again
    reopened.close()
