"""20+ annotators submitting at once through the HTTP API: every ranking stored exactly once,
every item exactly at its quota, nobody ranks an item twice."""

from __future__ import annotations

import collections

from align.config.annotate import AnnotateConfig
from annotation_ui.store import Store
from annotation_ui.testing import run_load, running_app, sample_items

ANNOTATORS = 20
ITEMS = 100
QUOTA = 2  # -> 200 rankings


def test_concurrent_annotators_over_http(tmp_path):
    store = Store(str(tmp_path / "load.db"), quota=QUOTA)
    names = [f"ann-{i:02d}" for i in range(ANNOTATORS)]
    for name in names:
        store.add_annotator(name, "load-pw")
    store.add_items(sample_items(ITEMS, k=3))
    config = AnnotateConfig(min_annotations_per_item=QUOTA, server={"concurrency": ANNOTATORS})
    with running_app(store, config) as url:
        result = run_load(url, names, "load-pw")
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
