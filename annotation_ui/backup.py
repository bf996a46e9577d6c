"""Backups of the annotation database, taken while the server writes, and restores from them.

    align annotate backup --db URL --out annotations-2026-12-05.db
    align annotate restore annotations-2026-12-05.db --db URL      # into a new, empty database

A backup is always a SQLite file holding the store's tables (readable with `sqlite3`, and by
`align annotate export --db sqlite:///FILE`):
- from SQLite, SQLite's online backup API copies the pages under one read snapshot, so a submit
  is either wholly in the copy or not at all, and the server keeps writing meanwhile (WAL);
- from PostgreSQL, every table is read in one REPEATABLE READ transaction (one snapshot) and
  written into a fresh SQLite file (no pg_dump needed, and the same restore path for both).
Restore copies the rows table by table, parents first, into an empty database of either kind,
recounts each item's active rankings (the counting triggers also fire on the way in) and moves
PostgreSQL's id sequences past the restored ids, so new submits continue cleanly.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy import create_engine, func, insert, select, text

from align.errors import AlignInputError
from annotation_ui.store import Base, Store, normalise_url

TABLES = ("annotators", "items", "responses", "assignments", "rankings")  # parents before children
RECOUNT = "UPDATE items SET n_active = (SELECT count(*) FROM rankings r WHERE r.item_id = items.id AND r.superseded_at IS NULL)"


def backup(db: str, out: Path, overwrite: bool = False) -> dict[str, int]:
    """Write a consistent copy of `db` to `out` (a SQLite file); returns rows per table."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise AlignInputError(f"{out} already exists; choose another --out or pass --overwrite (nothing was written)")
    out.parent.mkdir(parents=True, exist_ok=True)
    store = Store(db, must_exist=True)  # a URL that holds no annotation tables is refused here
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        if store.is_sqlite:
            source = sqlite3.connect(store.url.split("sqlite:///", 1)[1])
            target = sqlite3.connect(tmp)
            with target:
                source.backup(target)  # all pages in one step: one consistent snapshot
            source.close()
            target.close()
        else:
            _copy_postgres(store, tmp)
        counts = _counts(f"sqlite:///{tmp}")
        tmp.replace(out)  # a reader of `out` never sees a half-written backup
    finally:
        tmp.unlink(missing_ok=True)
        store.close()
    return counts


def _copy_postgres(store: Store, tmp: Path) -> None:
    target = create_engine(f"sqlite:///{tmp}")
    Base.metadata.create_all(target)
    with store.engine.connect() as source, target.begin() as sink:
        source.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        for name in TABLES:
            table = Base.metadata.tables[name]
            rows = [dict(row._mapping) for row in source.execute(select(table).order_by(*table.primary_key))]
            if rows:
                sink.execute(insert(table), rows)
        source.rollback()
        sink.execute(text(RECOUNT))
    target.dispose()


def restore(backup_file: Path, db: str) -> dict[str, int]:
    """Copy a backup's rows into the empty database `db`; returns rows per table."""
    backup_file = Path(backup_file)
    if not backup_file.is_file():
        raise AlignInputError(f"backup file {backup_file} does not exist")
    try:
        source = create_engine(f"sqlite:///{backup_file}")
        with source.connect() as c:
            present = {row[0] for row in c.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))}
    except Exception as exc:  # not a SQLite file at all
        raise AlignInputError(f"{backup_file} is not an align annotation backup ({exc})") from None
    if not set(TABLES) <= present:
        raise AlignInputError(
            f"{backup_file} is not an align annotation backup (tables {', '.join(sorted(set(TABLES) - present))} missing)"
        )
    store = Store(db)
    try:
        if store.overview()["items"] or store.annotators():
            raise AlignInputError(
                f"{store.safe_url} already holds annotations; restore goes into a new, empty database "
                "(nothing was written)"
            )
        with source.connect() as reader, store.engine.begin() as sink:
            for name in TABLES:
                table = Base.metadata.tables[name]
                rows = [dict(row._mapping) for row in reader.execute(select(table).order_by(*table.primary_key))]
                if name == "items":  # the counting triggers count the rankings back in as they arrive
                    rows = [{**row, "n_active": 0} for row in rows]
                if rows:
                    sink.execute(insert(table), rows)
            sink.execute(text(RECOUNT))
            if sink.dialect.name == "postgresql":
                for name in TABLES:
                    sink.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                            f"COALESCE((SELECT max(id) FROM {name}), 0) + 1, false)"
                        )
                    )
        return _counts(store.url)
    finally:
        source.dispose()
        store.close()


def _counts(url: str) -> dict[str, int]:
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as c:
            return {
                name: c.execute(select(func.count()).select_from(Base.metadata.tables[name])).scalar_one()
                for name in TABLES
            }
    finally:
        engine.dispose()
