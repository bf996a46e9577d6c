"""20+ annotators submitting at once through the HTTP API: every ranking stored exactly once,
every item exactly at its quota, nobody ranks an item twice."""

from __future__ import annotations

import collections
import os

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from align.config.annotate import AnnotateConfig
from annotation_ui.store import Assignment, Base, Store
from annotation_ui.testing import run_load, running_app, sample_items, serving_processes

PG_URL = os.environ.get("ALIGN_TEST_PG_URL")

ANNOTATORS = 20
ITEMS = 100
QUOTA = 2  # -> 200 rankings


def test_concurrent_annotators_over_http(tmp_path):
    store = Store(str(tmp_path / "load.db"), quota=QUOTA)
    names = [f"ann-{i:02d}" for i in range(ANNOTATORS)]
    for name in names:
        store.add_annotator(name, "load-pw-1")
    store.add_items(sample_items(ITEMS, k=3))
    config = AnnotateConfig(min_annotations_per_item=QUOTA, server={"concurrency": ANNOTATORS})
    with running_app(store, config) as url:
        result = run_load(url, names, "load-pw-1")
    assert result.errors == []

    submitted = [(item, name) for name, items in result.submitted.items() for item in items]
    stored = [(r.item_id, r.annotator) for r in store.rankings(include_superseded=True)]
    assert len(submitted) == ITEMS * QUOTA
    assert sorted(stored) == sorted(submitted)  # every acknowledged submit is stored, exactly once
    assert len(set(stored)) == len(stored)  # no annotator ranked an item twice
    per_item = collections.Counter(item for item, _ in stored)
    assert len(per_item) == ITEMS and set(per_item.values()) == {QUOTA}
    assert sum(1 for items in result.submitted.values() if items) >= ANNOTATORS // 2  # the work was shared
    store.close()


@pytest.mark.postgres
def test_two_app_processes_on_one_postgres_hold_every_quota():
    """Two `align annotate serve` processes on one PostgreSQL, 16 annotators spread over them:
    every item ends exactly at its quota, nobody ranks or is handed an item twice, and no
    annotator ever holds two open items."""
    if not PG_URL:
        pytest.skip("ALIGN_TEST_PG_URL is not set (.ci/services.sh starts PostgreSQL and prints the URL)")
    store = Store(PG_URL, quota=QUOTA)
    Base.metadata.drop_all(store.engine)  # a clean schema; the app itself never drops
    Base.metadata.create_all(store.engine)
    names = [f"two-{i:02d}" for i in range(16)]
    for name in names:
        store.add_annotator(name, "load-pw-1")
    store.add_items(sample_items(60, k=3))
    with serving_processes(PG_URL, QUOTA, concurrency=16, processes=2) as urls:
        result = run_load(urls, names, "load-pw-1")
    assert result.errors == []

    submitted = [(item, name) for name, items in result.submitted.items() for item in items]
    stored = [(r.item_id, r.annotator) for r in store.rankings(include_superseded=True)]
    assert sorted(stored) == sorted(submitted) and len(submitted) == 60 * QUOTA
    assert len(set(stored)) == len(stored)
    assert set(collections.Counter(item for item, _ in stored).values()) == {QUOTA}
    with Session(store.engine) as s:
        handed = s.execute(select(Assignment.item_id, Assignment.annotator_id, Assignment.status)).all()
    done = collections.Counter(item for item, _, status in handed if status == "done")
    assert set(done.values()) == {QUOTA}  # no item handed out and completed more than its quota
    per_pair = collections.Counter((item, who) for item, who, _ in handed)
    assert max(per_pair.values()) == 1  # nobody was handed the same item twice
    assert [h for h in handed if h.status == "open"] == []  # all finished: nothing left reserved
    served_by = {url: sum(1 for i, n in enumerate(names) if urls[i % 2] == url and result.submitted[n]) for url in urls}
    assert all(served_by.values())  # both processes really served annotators
    store.close()
