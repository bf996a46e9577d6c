"""Backups of the annotation database, taken while the server writes, and restores from them.

    align annotate backup --db URL --out annotations-2026-12-05.db
    align annotate restore annotations-2026-12-05.db --db URL      # into a new, empty database

A backup is always a SQLite file holding the store's tables (readable with `sqlite3`, and by
`align annotate export --db sqlite:///FILE`), created readable by its owner only (it holds the
password hashes), with the schema version in SQLite's `user_version`:
- from SQLite, SQLite's online backup API copies the pages under one read snapshot, so a submit
  is either wholly in the copy or not at all, and the server keeps writing meanwhile (WAL);
- from PostgreSQL, every table is read in one REPEATABLE READ transaction (one snapshot) and
  written into a fresh SQLite file (no pg_dump needed, and the same restore path for both).
Restore reads the whole file first: a backup of an older version is upgraded (in a copy), one
of a newer version refused, and every row checked (annotation_ui.backup_check); only then does
it write, in one transaction, into an empty database of either kind: parents before children,
rankings before the links between them (an undone ranking points at the later one that replaced
it), the items' counts recounted, PostgreSQL's id sequences moved past the restored ids.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy import bindparam, create_engine, func, insert, select, text, update

from align.errors import AlignInputError
from annotation_ui.backup_check import TABLES, Rows, read_rows
from annotation_ui.store import RECOUNT_ACTIVE, SCHEMA_VERSION, Base, Store, normalise_url, sqlite_path, upgrade_schema


def backup(db: str, out: Path, overwrite: bool = False) -> dict[str, int]:
    """Write a consistent copy of `db` to `out` (a SQLite file, mode 0600); returns rows per table."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise AlignInputError(f"{out} already exists; choose another --out or pass --overwrite (nothing was written)")
    out.parent.mkdir(parents=True, exist_ok=True)
    store = Store(db, must_exist=True)  # a URL that holds no annotation tables is refused here
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # private before a byte is in it
        if store.is_sqlite:
            source = sqlite3.connect(sqlite_path(store.url))
            target = sqlite3.connect(tmp)
            with target:
                source.backup(target)  # all pages in one step: one consistent snapshot
            source.close()
            target.close()
        else:
            _copy_postgres(store, tmp)
        with sqlite3.connect(tmp) as stamp:
            stamp.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        stamp.close()
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
        sink.execute(text(RECOUNT_ACTIVE))
    target.dispose()


def restore(backup_file: Path, db: str) -> dict[str, int]:
    """Copy a backup's rows into the empty database `db`; returns rows per table. A file with a
    bad row is refused before the database is opened; a failed write leaves it as it was."""
    rows = read_backup(Path(backup_file))
    store = Store(db)
    try:
        if store.overview()["items"] or store.annotators(include_disabled=True):
            raise AlignInputError(
                f"{store.safe_url} already holds annotations; restore goes into a new, empty database "
                "(nothing was written)"
            )
        with store.engine.begin() as sink:  # one transaction: all rows or none
            write_rows(sink, rows)
        return _counts(store.url)
    finally:
        store.close()


def read_backup(path: Path) -> Rows:
    """Every row of a backup file, upgraded to this version's schema and checked."""
    if not path.is_file():
        raise AlignInputError(f"backup file {path} does not exist")
    with tempfile.TemporaryDirectory(prefix="align-restore-") as scratch:
        copy = Path(scratch) / "backup.db"
        shutil.copyfile(path, copy)  # the upgrade writes; the user's file stays as it is
        try:
            with sqlite3.connect(copy) as c:
                version = c.execute("PRAGMA user_version").fetchone()[0]
                present = {row[0] for row in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            c.close()
        except sqlite3.DatabaseError as exc:  # not a SQLite file at all
            raise AlignInputError(f"{path} is not an align annotation backup ({exc})") from None
        if not set(TABLES) <= present:
            missing = ", ".join(sorted(set(TABLES) - present))
            raise AlignInputError(f"{path} is not an align annotation backup (tables {missing} missing)")
        if version > SCHEMA_VERSION:
            raise AlignInputError(
                f"{path} was written by a newer align (schema version {version}; this one reads up to "
                f"{SCHEMA_VERSION}): upgrade align (pip install -U align) and restore again; nothing was restored"
            )
        if version < SCHEMA_VERSION:  # 0: written before backups carried a version
            engine = create_engine(f"sqlite:///{copy}")
            try:
                upgrade_schema(engine)
            finally:
                engine.dispose()
        connection = sqlite3.connect(copy)
        try:
            return read_rows(connection, path)
        finally:
            connection.close()


def write_rows(sink, rows: Rows) -> None:
    """Insert checked rows into an empty store's tables on connection `sink` (one transaction)."""
    for name in TABLES:
        table = Base.metadata.tables[name]
        batch = rows[name]
        if name == "items":  # the counting triggers count the rankings back in as they arrive
            batch = [{**row, "n_active": 0} for row in batch]
        if name == "rankings":  # a ranking may point at a later one: the links go in once all exist
            batch = [{**row, "superseded_by": None} for row in batch]
        if batch:
            sink.execute(insert(table), batch)
    links = [{"ranking": r["id"], "by": r["superseded_by"]} for r in rows["rankings"] if r["superseded_by"]]
    if links:
        rankings = Base.metadata.tables["rankings"]
        sink.execute(
            update(rankings).where(rankings.c.id == bindparam("ranking")).values(superseded_by=bindparam("by")),
            links,
        )
    sink.execute(text(RECOUNT_ACTIVE))
    if sink.dialect.name == "postgresql":
        for name in TABLES:
            sink.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                    f"COALESCE((SELECT max(id) FROM {name}), 0) + 1, false)"
                )
            )


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
