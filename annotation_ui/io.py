"""Getting items into the store and rankings out of it, in the docs/design.md formats.

Import: JSONL (or JSON/CSV/Parquet) of `{"prompt", "responses": [...], "id"?, "source_model"?, ...}`;
every problem names the file and line, and a bad file stores nothing.

Export (the contracts the reward stage reads):
- rankings: `{"prompt", "responses", "ranks", "annotator", "item_id"}` per annotator, or one
  aggregated ranking per item (no "annotator");
- pairs: `{"prompt", "chosen", "rejected"}`, one per pair of different rank (ties give none).

`export_rankings(db_url, aggregate)` and `export_pairs(db_url)` are the functions another
stage calls to read a database URL directly.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from align.data.io import read_jsonl_numbered
from align.errors import AlignInputError
from align.rundir import atomic_write_text
from annotation_ui.agreement import aggregate as aggregate_ranks
from annotation_ui.store import NewItem, RankingRecord, Store

ITEM_KEYS = {"prompt", "responses", "id", "item_id", "source_model", "meta"}


# -- import ---------------------------------------------------------------------------------
def read_items(path: str | Path, source_model: str | None = None) -> list[NewItem]:
    """Parse and check an items file completely before anything is stored."""
    path = Path(path)
    if not path.is_file():
        raise AlignInputError(f"items file not found: {path}")
    if path.suffix.lower() == ".jsonl":
        numbered = list(read_jsonl_numbered(path))
        label = "line"
    else:
        from align.data.io import read_records

        numbered = list(enumerate(read_records(path), start=1))
        label = "record"
    if not numbered:
        raise AlignInputError(f"{path}: no items (the file is empty)")
    items, first_seen = [], {}
    for number, record in numbered:
        where = f"{path}:{number}" if label == "line" else f"{path}: record {number}"
        item = item_from_record(record, where, source_model)
        if item.external_id in first_seen:
            raise AlignInputError(
                f"{where}: duplicate item id {item.external_id!r} (first at {label} {first_seen[item.external_id]}); "
                "give each item a unique id"
            )
        first_seen[item.external_id] = number
        items.append(item)
    return items


def item_from_record(record: dict[str, Any], where: str, source_model: str | None = None) -> NewItem:
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise AlignInputError(
            f"{where}: needs a non-empty string 'prompt' (it has keys {', '.join(sorted(record)) or 'none'})"
        )
    responses = record.get("responses")
    if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
        raise AlignInputError(f"{where}: 'responses' must be a list of strings")
    if len(responses) < 2:
        raise AlignInputError(f"{where}: {len(responses)} response(s); an item needs at least 2 to rank")
    raw_id = record.get("id", record.get("item_id"))
    external_id = str(raw_id) if raw_id is not None else content_id(prompt, responses)
    meta = dict(record.get("meta") or {})
    meta.update({k: v for k, v in record.items() if k not in ITEM_KEYS})
    return NewItem(
        prompt=prompt,
        responses=list(responses),
        external_id=external_id,
        source_model=record.get("source_model", source_model),
        meta=meta,
    )


def content_id(prompt: str, responses: Sequence[str]) -> str:
    """A stable id for an item without one: the same content always gets the same id."""
    return "sha-" + hashlib.sha256(json.dumps([prompt, list(responses)]).encode()).hexdigest()[:16]


def import_items(store: Store, path: str | Path, source_model: str | None = None) -> int:
    return store.add_items(read_items(path, source_model))


# -- export ---------------------------------------------------------------------------------
def ranking_rows(
    records: Sequence[RankingRecord], aggregate: bool = False, method: str = "mean_rank", min_rankings: int = 1
) -> list[dict[str, Any]]:
    """Raw rankings (one row per annotator and item) or one aggregated row per item."""
    if not aggregate:
        return [
            {
                "prompt": r.prompt,
                "responses": r.responses,
                "ranks": r.ranks,
                "annotator": r.annotator,
                "item_id": r.external_id,
            }
            for r in records
        ]
    by_item: dict[str, list[RankingRecord]] = defaultdict(list)
    for r in records:
        by_item[r.external_id].append(r)
    rows = []
    for item_id, group in by_item.items():
        if len(group) < min_rankings:
            continue
        rows.append(
            {
                "prompt": group[0].prompt,
                "responses": group[0].responses,
                "ranks": aggregate_ranks([r.ranks for r in group], method),
                "item_id": item_id,
            }
        )
    return rows


def pairs_from_ranking(prompt: str, responses: Sequence[str], ranks: Sequence[int]) -> list[dict[str, str]]:
    """Every pair of different rank, better one as chosen (InstructGPT); ties give no pair."""
    pairs = []
    for i, j in itertools.combinations(range(len(responses)), 2):
        if ranks[i] == ranks[j]:
            continue
        best, worst = (i, j) if ranks[i] < ranks[j] else (j, i)
        pairs.append({"prompt": prompt, "chosen": responses[best], "rejected": responses[worst]})
    return pairs


def pair_rows(ranking_rows_: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    return [p for row in ranking_rows_ for p in pairs_from_ranking(row["prompt"], row["responses"], row["ranks"])]


def export_rankings(
    db_url: str, aggregate: bool = False, method: str = "mean_rank", min_rankings: int = 1
) -> list[dict[str, Any]]:
    """Rankings in the docs/design.md format straight from a database URL (or SQLite path)."""
    store = Store(db_url, must_exist=True)
    try:
        return ranking_rows(store.rankings(), aggregate, method, min_rankings)
    finally:
        store.close()


def export_pairs(
    db_url: str, aggregate: bool = False, method: str = "mean_rank", min_rankings: int = 1
) -> list[dict[str, str]]:
    """Preference pairs from a database: from every annotator's ranking, or from the aggregated ones."""
    return pair_rows(export_rankings(db_url, aggregate, method, min_rankings))


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path
