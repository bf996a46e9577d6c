"""The ranking app through its HTTP API with gradio_client: login, fetch, submit, undo,
resume after a server restart, quota, and what one annotator must not be able to do."""

from __future__ import annotations

import pytest
from gradio_client import Client

from align.config.annotate import AnnotateConfig
from annotation_ui.render import safe_markdown
from annotation_ui.store import NewItem, Store
from annotation_ui.testing import running_app, sample_items

PASSWORD = "pw-secret"
EVIL = "Look: <script>alert('x')</script> and <img src=x onerror=alert(1)>"


@pytest.fixture
def store(tmp_path):
    store = Store(str(tmp_path / "app.db"), quota=2)
    for name in ("alice", "bob", "carol"):
        store.add_annotator(name, PASSWORD)
    store.add_annotator("root", PASSWORD, role="admin")
    store.add_items(sample_items(3) + [NewItem("Which is safe?", [EVIL, "plain text", "`<b>code</b>`"], "evil")])
    yield store
    store.close()


def client(url: str, name: str) -> Client:
    return Client(url, auth=(name, PASSWORD), verbose=False, download_files=False)


def test_login_fetch_submit_undo(store):
    with running_app(store) as url:
        with pytest.raises(ValueError):
            Client(url, auth=("alice", "wrong"), verbose=False)
        with pytest.raises(ValueError):
            Client(url, auth=("mallory", PASSWORD), verbose=False)
        import httpx

        anonymous = httpx.post(url + "gradio_api/call/fetch", json={"data": []})
        assert anonymous.status_code in (401, 403)  # no session cookie, no API
        alice = client(url, "alice")
        item = alice.predict(api_name="/fetch")
        assert item["progress"] == {"done": 0, "available": 4, "items_left": 4, "total_items": 4}
        shown = item["responses"]
        # rank the shown responses 3, 1, 2 (in the shuffled order alice sees them)
        result = alice.predict(item["item_id"], [3, 1, 2], False, "fine", api_name="/submit")
        stored = store.rankings(annotator="alice")[0]
        best_shown = shown[1]
        assert stored.ranks[stored.responses.index(best_shown)] == 1  # the order was mapped back
        assert stored.comment == "fine" and result["ranking_id"] == stored.ranking_id
        assert alice.predict(api_name="/progress")["done"] == 1
        assert alice.predict(api_name="/my_rankings")[0]["ranks"] == [3, 1, 2]

        assert alice.predict(api_name="/undo") == {"undone_item_id": item["item_id"]}
        assert store.rankings(annotator="alice") == []
        assert len(store.rankings(include_superseded=True)) == 1  # kept, marked superseded
        again = alice.predict(api_name="/fetch")
        assert again["item_id"] == item["item_id"] and again["responses"] == shown  # same order after undo
        alice.predict(again["item_id"], [1, 2, 3], True, "", api_name="/submit")
        assert store.rankings(annotator="alice")[0].all_bad is True


def test_resume_after_server_restart(store, tmp_path):
    with running_app(store) as url:
        bob = client(url, "bob")
        first = bob.predict(api_name="/fetch")
        bob.predict(first["item_id"], [1, 2, 3], False, "", api_name="/submit")
        current = bob.predict(api_name="/fetch")
    reopened = Store(store.url, quota=2)  # a new process would open the same file like this
    try:
        with running_app(reopened) as url:
            bob = client(url, "bob")
            resumed = bob.predict(api_name="/fetch")
            assert resumed["item_id"] == current["item_id"] and resumed["responses"] == current["responses"]
            assert resumed["progress"]["done"] == 1
    finally:
        reopened.close()


def test_quota_and_no_item_twice(store):
    with running_app(store) as url:
        clients = {name: client(url, name) for name in ("alice", "bob", "carol")}
        got: dict[str, list[int]] = {name: [] for name in clients}
        active = set(clients)
        while active:
            for name in sorted(active):
                item = clients[name].predict(api_name="/fetch")
                if item["item_id"] is None:
                    active.discard(name)
                    continue
                clients[name].predict(
                    item["item_id"], list(range(1, len(item["responses"]) + 1)), False, "", api_name="/submit"
                )
                got[name].append(item["item_id"])
    for name, items in got.items():
        assert len(items) == len(set(items)), f"{name} got an item twice"
    counts = {}
    for r in store.rankings():
        counts[r.item_id] = counts.get(r.item_id, 0) + 1
    assert sorted(counts.values()) == [2, 2, 2, 2]  # every item exactly at the quota of 2


def test_annotators_cannot_reach_others_or_admin(store):
    with running_app(store) as url:
        alice, bob = client(url, "alice"), client(url, "bob")
        item = alice.predict(api_name="/fetch")
        alice.predict(item["item_id"], [1, 2, 3], False, "mine", api_name="/submit")
        assert bob.predict(api_name="/my_rankings") == []  # bob never sees alice's ranking
        bob_item = bob.predict(api_name="/fetch")
        assert bob_item["item_id"] == item["item_id"]  # the started item goes to the second annotator
        assert bob.predict(api_name="/undo") == {"undone_item_id": None}  # undo is per user: alice's stays
        assert bob.predict(bob_item["item_id"], api_name="/skip") == {"skipped": bob_item["item_id"]}
        assert bob.predict(api_name="/fetch")["item_id"] != bob_item["item_id"]  # a skipped item is not offered again
        bob_item = bob.predict(api_name="/fetch")
        assert len(store.rankings(annotator="alice")) == 1
        given = {item["item_id"], bob_item["item_id"]}
        other = next(i for i in map(lambda e: _id_of(store, e), store.item_ids()) if i not in given)
        with pytest.raises(Exception, match="not assigned"):  # ranking an item one was not given
            bob.predict(other, [1, 2, 3], False, "", api_name="/submit")
        with pytest.raises(Exception, match="admin only"):
            alice.predict(api_name="/admin_overview")
        overview = client(url, "root").predict(api_name="/admin_overview")
        assert overview["annotators"]["alice"]["done"] == 1 and overview["items"] == 4
        with pytest.raises(Exception, match="2 ranks for 3 responses"):
            bob.predict(bob_item["item_id"], [1, 2], False, "", api_name="/submit")
        with pytest.raises(Exception, match="item_id must be a whole number"):
            bob.predict("1 OR 1=1", [1, 2, 3], False, "", api_name="/submit")


def _id_of(store: Store, external_id: str) -> int:
    with store.engine.connect() as conn:
        from sqlalchemy import text

        return conn.execute(text("SELECT id FROM items WHERE external_id = :e"), {"e": external_id}).scalar_one()


def test_markup_in_responses_is_shown_as_text():
    rendered = safe_markdown(EVIL)
    assert "<script>" not in rendered and "<img" not in rendered
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in rendered and "&lt;img src=x onerror=alert(1)&gt;" in rendered
    assert (
        safe_markdown("`<b>code</b>` and <b>x</b>") == "`<b>code</b>` and &lt;b&gt;x&lt;/b&gt;"
    )  # code is escaped by Markdown itself


def test_serve_refuses_an_empty_user_table(tmp_path):
    from align.errors import AlignInputError
    from annotation_ui.app import launch

    with pytest.raises(AlignInputError, match="add-user"):
        launch(Store(str(tmp_path / "empty.db")), AnnotateConfig(), block=False, quiet=True)
