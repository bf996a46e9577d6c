"""Backups that restore: every state a real annotation round produces (undos and re-ranks, skips,
items reassigned after a lapsed lease, two rounds of items, admin and annotator accounts, a
removed account) round-trips through backup -> restore row by row, on SQLite and PostgreSQL, also
while annotators keep submitting; a file with a row no store would write is refused (exit 2)
naming its table, row and field, before anything is written; backups are private (0600);
versions are upgraded or refused."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time

import pytest
from annotate_db import PASSWORD, fresh_db
from sqlalchemy import select

from align.errors import AlignInputError
from annotation_ui.app import Service
from annotation_ui.backup import backup, restore
from annotation_ui.backup_check import TABLES
from annotation_ui.store import SCHEMA_VERSION, Base, Store
from annotation_ui.testing import sample_items

KINDS = ["sqlite", "postgres"]


def all_rows(store: Store) -> dict[str, list[tuple]]:
    """Every row of every table, in id order, as the database holds it."""
    with store.engine.connect() as c:
        return {
            name: [tuple(row) for row in c.execute(select(Base.metadata.tables[name]).order_by("id"))]
            for name in TABLES
        }


def a_real_round(store: Store) -> Service:
    """Undos, re-ranks, skips, a lapsed lease reassigned, two rounds of items, an admin and a
    removed annotator, all through the app's own Service (as the page and the API call it)."""
    service = Service(store)
    store.add_annotator("lead", PASSWORD, role="admin")
    for name in ("alice", "bob", "carol"):
        store.add_annotator(name, PASSWORD)
    store.add_items(sample_items(5, prefix="round1"))

    def rank(user: str, reverse: bool = False, comment: str = "") -> int:
        item = service.fetch(user)
        k = len(item["responses"])
        ranks = list(range(k, 0, -1)) if reverse else list(range(1, k + 1))
        return service.submit(user, item["item_id"], ranks, False, comment)["item_id"]

    rank("alice")
    rank("alice", comment="B is rude")
    service.undo("alice")  # superseded, handed back ...
    rank("alice", reverse=True)  # ... and ranked again: the undone row points at this later one
    service.undo("alice")
    rank("alice")  # a chain: first -> second -> third ranking of the same item
    skipped = service.fetch("bob")["item_id"]
    service.skip("bob", skipped)
    rank("bob")
    service.fetch("carol")  # carol takes an item and walks away: her lease lapses ...
    store.lease_seconds = 0.0
    rank("bob")  # ... and the item goes to bob
    store.lease_seconds = 3600.0
    store.add_items(sample_items(3, prefix="round2"))  # a second round, ties and all-bad in it
    item = service.fetch("carol")
    service.submit("carol", item["item_id"], [1] * len(item["responses"]), True, "all bad")
    rank("bob")
    store.disable_annotator("carol")
    return service


@pytest.mark.parametrize("kind", KINDS)
def test_a_real_round_round_trips_row_by_row(kind, tmp_path):
    store = Store(fresh_db(kind, tmp_path), quota=2)
    a_real_round(store)
    links = [(row[0], row[-1]) for row in all_rows(store)["rankings"] if row[-1] is not None]  # (id, superseded_by)
    assert links == [(2, 3), (3, 4)]  # what broke restores: a ranking undone, ranked again, twice (a chain)
    counts = backup(store.url, tmp_path / "team.db")
    assert stat.S_IMODE(os.stat(tmp_path / "team.db").st_mode) == 0o600  # it holds the password hashes
    target_url = fresh_db(kind, tmp_path)
    assert restore(tmp_path / "team.db", target_url) == counts
    restored = Store(target_url, quota=2)
    assert all_rows(restored) == all_rows(store)
    # and the restored database works on: logins, the removed account stays out, new rankings get new ids
    assert restored.check_login("alice", PASSWORD) and not restored.check_login("carol", PASSWORD)
    service = Service(restored)
    item = service.fetch("lead")
    newest = max(r.ranking_id for r in restored.rankings(include_superseded=True))
    assert (
        service.submit("lead", item["item_id"], list(range(1, len(item["responses"]) + 1)), False, "")["ranking_id"]
        > newest
    )
    store.close()
    restored.close()


@pytest.mark.parametrize("kind", KINDS)
def test_backup_under_load_restores_exactly_the_backup(kind, tmp_path):
    """Annotators keep ranking, undoing and re-ranking while the backup is taken; the restore
    equals the backup file row by row and holds every ranking acknowledged before it began."""
    store = Store(fresh_db(kind, tmp_path), quota=2)
    a_real_round(store)
    store.add_items(sample_items(80, prefix="load"))
    service = Service(store)
    for name in ("dan", "erin"):
        store.add_annotator(name, PASSWORD)
    acknowledged, lock, started, stop = [], threading.Lock(), threading.Event(), threading.Event()
    before: list[int] = []

    def annotate(name: str) -> None:
        n = 0
        while not stop.is_set():
            item = service.fetch(name)
            if item["item_id"] is None:
                return
            ranking = service.submit(name, item["item_id"], list(range(1, len(item["responses"]) + 1)), False, "")
            n += 1
            if n % 3 == 0:
                service.undo(name)  # re-ranked on the next fetch
                continue
            with lock:
                acknowledged.append(ranking["ranking_id"])
                if not started.is_set():
                    before.append(ranking["ranking_id"])

    threads = [threading.Thread(target=annotate, args=(name,)) for name in ("dan", "erin")]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 10 and time.monotonic() < deadline:
        time.sleep(0.005)
    with lock:
        started.set()
    counts = backup(store.url, tmp_path / "hot.db")
    time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert len(before) >= 10
    target_url = fresh_db(kind, tmp_path)
    assert restore(tmp_path / "hot.db", target_url) == counts
    restored = Store(target_url, quota=2)
    snapshot = Store(str(tmp_path / "hot.db"), must_exist=True)
    assert all_rows(restored) == all_rows(snapshot)
    ids = {r.ranking_id for r in restored.rankings(include_superseded=True)}
    assert set(before) <= ids
    for table in ("annotators", "responses"):  # what the load did not touch: equal to the live store
        assert all_rows(restored)[table] == all_rows(store)[table]
    for c in (store, restored, snapshot):
        c.close()


def corrupted(tmp_path, statement: str, name: str = "bad.db") -> str:
    """A good backup with one statement applied to it, as a hand edit or another program would."""
    source = tmp_path / "good.db"
    if not source.exists():
        store = Store(str(tmp_path / "live.db"), quota=2)
        a_real_round(store)
        store.close()
        backup(str(tmp_path / "live.db"), source)
    bad = tmp_path / name
    bad.write_bytes(source.read_bytes())
    with sqlite3.connect(bad) as c:
        c.executescript(statement)
    c.close()
    return str(bad)


BAD_ROWS = [
    ("UPDATE annotators SET role = 'superuser' WHERE name = 'alice'", "annotators", "role", "superuser"),
    ("UPDATE annotators SET password_hash = 'hunter22' WHERE name = 'bob'", "annotators", "password_hash", "scrypt"),
    ("UPDATE rankings SET ranks = '\"garbage\"' WHERE id = 1", "rankings", "ranks", "list"),
    ("UPDATE rankings SET ranks = '[1, 2, 9]' WHERE id = 1", "rankings", "ranks", "1 (best) to 3"),
    ("UPDATE rankings SET ranks = 'not json' WHERE id = 2", "rankings", "ranks", "not JSON"),
    ("UPDATE rankings SET ranks = '[NaN, 1, 2]' WHERE id = 2", "rankings", "ranks", "not JSON"),
    ("UPDATE rankings SET item_id = 999 WHERE id = 1", "rankings", "item_id", "999"),
    ("UPDATE rankings SET superseded_by = 777 WHERE id = 1", "rankings", "superseded_by", "777"),
    (
        "DROP INDEX uq_active_ranking; UPDATE rankings SET superseded_at = NULL, superseded_by = NULL WHERE id = 2",
        "rankings",
        "superseded_at",
        "second active",
    ),
    ("UPDATE assignments SET status = 'stolen' WHERE id = 1", "assignments", "status", "stolen"),
    ("UPDATE assignments SET annotator_id = 99 WHERE id = 1", "assignments", "annotator_id", "99"),
    ("UPDATE rankings SET created_at = 'yesterday' WHERE id = 3", "rankings", "created_at", "date"),
    ("UPDATE rankings SET all_bad = 7 WHERE id = 3", "rankings", "all_bad", "true or false"),
    ("DELETE FROM responses WHERE position = 1 AND item_id = 1", "responses", "position", "0..k-1"),
]


@pytest.mark.parametrize("statement,table,field,words", BAD_ROWS, ids=[f"{t}.{f}" for _, t, f, _ in BAD_ROWS])
def test_a_bad_row_is_refused_naming_table_row_and_field_and_nothing_is_written(
    statement, table, field, words, tmp_path
):
    bad = corrupted(tmp_path, statement)
    target = tmp_path / "target.db"
    with pytest.raises(AlignInputError) as caught:
        restore(bad, str(target))
    message = str(caught.value)
    assert f"table {table}, row id=" in message and f"field {field}" in message and words in message, message
    assert "nothing was restored" in message
    assert not target.exists()  # refused before the target was even opened


def test_wrong_columns_newer_and_older_versions(tmp_path):
    wrong = corrupted(tmp_path, "ALTER TABLE rankings RENAME COLUMN comment TO note", "wrong.db")
    with pytest.raises(AlignInputError, match="table rankings .*missing column.*comment.*unknown column.*note"):
        restore(wrong, str(tmp_path / "t1.db"))
    newer = corrupted(tmp_path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}", "newer.db")
    with pytest.raises(AlignInputError, match=f"newer align \\(schema version {SCHEMA_VERSION + 1}"):
        restore(newer, str(tmp_path / "t2.db"))
    # a backup of the version before removable accounts (no disabled_at, no version stamp) is upgraded
    older = corrupted(
        tmp_path,
        "PRAGMA user_version = 0; UPDATE annotators SET disabled_at = NULL; "
        "ALTER TABLE annotators DROP COLUMN disabled_at",
        "older.db",
    )
    counts = restore(older, str(tmp_path / "t3.db"))
    assert counts["annotators"] == 4 and counts["rankings"] > 0
    assert sqlite3.connect(older).execute("PRAGMA user_version").fetchone()[0] == 0  # the user's file untouched
    with pytest.raises(AlignInputError, match="not an align annotation backup"):
        (tmp_path / "junk.db").write_bytes(b"definitely not sqlite" * 100)
        restore(tmp_path / "junk.db", str(tmp_path / "t4.db"))


def test_a_failed_write_leaves_the_target_empty(tmp_path, monkeypatch):
    from annotation_ui import backup as module

    good = corrupted(tmp_path, "SELECT 1", "same.db")
    real = module.write_rows

    def breaks_after_the_rows(sink, rows):
        real(sink, rows)
        raise RuntimeError("disk full")  # after every insert: the transaction must take them all back

    monkeypatch.setattr(module, "write_rows", breaks_after_the_rows)
    target = str(tmp_path / "target.db")
    with pytest.raises(RuntimeError, match="disk full"):
        restore(good, target)
    empty = Store(target)
    assert all(rows == [] for rows in all_rows(empty).values())
    empty.close()


def test_restore_of_a_bad_file_from_the_shell_is_exit_2_without_traceback(tmp_path):
    bad = corrupted(tmp_path, BAD_ROWS[0][0])
    out = subprocess.run(
        [sys.executable, "-m", "align", "annotate", "restore", bad, "--db", str(tmp_path / "new.db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "table annotators" in out.stderr and "field role" in out.stderr and "Traceback" not in out.stderr
