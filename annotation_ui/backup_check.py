"""Reading a backup file's rows back as the store would have written them, or one clear error.

A restore must never put into a team's database a row the app could not have made: an unknown
role, a password "hash" that is plain text, ranks that are not ranks, a ranking of an item that
does not exist. Every row of every table is converted by its column's type, then checked against
the store's own rules (the same rank validation as a submit, the same hash parser as a login);
the first problem is raised as AlignInputError naming the file, table, row and field, before
anything is written anywhere.
"""

from __future__ import annotations

import json
import math
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text

from align.errors import AlignInputError
from annotation_ui.assignment import validate_ranks
from annotation_ui.auth import parse_hash
from annotation_ui.store import ASSIGNMENT_STATES, MAX_RESPONSES, ROLES, Base

TABLES = ("annotators", "items", "responses", "assignments", "rankings")  # parents before children
Rows = dict[str, list[dict[str, Any]]]


class BadRow(ValueError):
    """A field of one row that no store would have written."""

    def __init__(self, field: str, why: str):
        super().__init__(why)
        self.field = field


def read_rows(connection: sqlite3.Connection, where: Path) -> Rows:
    """Every table's rows, typed and checked; AlignInputError at the first bad one."""
    rows: Rows = {}
    for name in TABLES:
        table = Base.metadata.tables[name]
        columns = [row[1] for row in connection.execute(f"PRAGMA table_info({name})")]
        expected = [c.name for c in table.columns]
        missing, unknown = sorted(set(expected) - set(columns)), sorted(set(columns) - set(expected))
        if missing or unknown:
            said = "; ".join(
                part
                for part in (
                    f"missing column(s) {', '.join(missing)}" if missing else "",
                    f"unknown column(s) {', '.join(unknown)}" if unknown else "",
                )
                if part
            )
            raise AlignInputError(
                f"{where}: table {name} does not have the columns of an align backup ({said}); nothing was restored"
            )
        cursor = connection.execute(f"SELECT {', '.join(expected)} FROM {name} ORDER BY id")
        rows[name] = []
        for raw in cursor:
            record = dict(zip(expected, raw, strict=True))
            try:
                rows[name].append({c.name: _typed(c, record[c.name]) for c in table.columns})
            except BadRow as bad:
                raise _error(where, name, record.get("id"), bad) from None
    _check_rules(rows, where)
    return rows


def _error(where: Path, table: str, row_id: Any, bad: BadRow) -> AlignInputError:
    return AlignInputError(
        f"{where}: table {table}, row id={row_id!r}, field {bad.field}: {bad}; nothing was restored "
        "(was the file edited by hand, or written by another program?)"
    )


def _typed(column, value: Any) -> Any:
    """`value` as SQLAlchemy would hand it back for this column, or BadRow."""
    if value is None:
        if column.nullable and not column.primary_key:
            return None
        raise BadRow(column.name, "is empty, and must not be")
    kind = column.type
    if isinstance(kind, Boolean):
        if value not in (0, 1):
            raise BadRow(column.name, f"is {value!r}, not true or false")
        return bool(value)
    if isinstance(kind, Integer):
        if not isinstance(value, int) or isinstance(value, bool) or not -(2**31) <= value < 2**31:
            raise BadRow(column.name, f"is {value!r}, not a whole number")
        return value
    if isinstance(kind, Float):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise BadRow(column.name, f"is {value!r}, not a finite number")
        return float(value)
    if isinstance(kind, DateTime):
        try:
            return datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise BadRow(column.name, f"is {value!r}, not a date and time") from None
    if isinstance(kind, JSON):
        try:
            return json.loads(value, parse_constant=_no_constant)
        except (TypeError, ValueError, RecursionError):
            raise BadRow(column.name, f"is {str(value)[:60]!r}, not JSON") from None
    if isinstance(kind, (String, Text)):
        if not isinstance(value, str):
            raise BadRow(column.name, f"is {value!r}, not text")
        if isinstance(kind, String) and kind.length and len(value) > kind.length:
            raise BadRow(column.name, f"is {len(value)} characters, longer than {kind.length}")
        return value
    raise BadRow(column.name, f"has a type this check does not know ({kind})")  # a new column type: add it above


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _check_rules(rows: Rows, where: Path) -> None:
    """The store's rules across rows: roles, hashes, references, one active ranking, valid ranks."""

    def fail(table: str, row: dict, field: str, why: str) -> None:
        raise _error(where, table, row["id"], BadRow(field, why))

    names: set[str] = set()
    for row in rows["annotators"]:
        if row["role"] not in ROLES:
            fail("annotators", row, "role", f"is {row['role']!r}; roles are {', '.join(ROLES)}")
        if not row["name"].strip() or row["name"] in names:
            fail("annotators", row, "name", f"{row['name']!r} is empty or given twice")
        names.add(row["name"])
        try:
            parse_hash(row["password_hash"])
        except ValueError as exc:
            fail("annotators", row, "password_hash", str(exc))
    external: set[str] = set()
    for row in rows["items"]:
        if not row["external_id"] or row["external_id"] in external:
            fail("items", row, "external_id", f"{row['external_id']!r} is empty or given twice")
        external.add(row["external_id"])
        if not isinstance(row["meta"], dict):
            fail("items", row, "meta", "must be a JSON object")
    items = {row["id"] for row in rows["items"]}
    people = {row["id"] for row in rows["annotators"]}
    positions: dict[int, list[int]] = {}
    for row in rows["responses"]:
        if row["item_id"] not in items:
            fail("responses", row, "item_id", f"names item {row['item_id']}, which the backup does not hold")
        positions.setdefault(row["item_id"], []).append(row["position"])
    for item, found in positions.items():
        if sorted(found) != list(range(len(found))) or not 2 <= len(found) <= MAX_RESPONSES:
            row = next(r for r in rows["responses"] if r["item_id"] == item)
            fail("responses", row, "position", f"item {item} has positions {sorted(found)}, not 0..k-1 with k >= 2")
    for row in rows["items"]:
        if row["id"] not in positions:
            fail("items", row, "id", "the item has no responses")
    open_of: set[int] = set()
    for row in rows["assignments"]:
        _references(row, items, people, lambda field, why, row=row: fail("assignments", row, field, why))
        if row["status"] not in ASSIGNMENT_STATES:
            fail("assignments", row, "status", f"is {row['status']!r}; states are {', '.join(ASSIGNMENT_STATES)}")
        if row["status"] == "open":
            if row["annotator_id"] in open_of:
                fail("assignments", row, "status", "a second open assignment of the same annotator")
            open_of.add(row["annotator_id"])
    ranking_ids = {row["id"] for row in rows["rankings"]}
    active: set[tuple[int, int]] = set()
    for row in rows["rankings"]:
        _references(row, items, people, lambda field, why, row=row: fail("rankings", row, field, why))
        try:
            validate_ranks(row["ranks"], len(positions[row["item_id"]]), where="ranks")
        except AlignInputError as exc:
            fail("rankings", row, "ranks", str(exc))
        if row["superseded_by"] is not None and row["superseded_by"] not in ranking_ids:
            fail("rankings", row, "superseded_by", f"names ranking {row['superseded_by']}, which is not in the backup")
        if row["superseded_by"] is not None and row["superseded_at"] is None:
            fail("rankings", row, "superseded_at", "is empty although the ranking was superseded")
        if row["superseded_at"] is None:
            key = (row["item_id"], row["annotator_id"])
            if key in active:
                fail("rankings", row, "superseded_at", "a second active ranking of the same item by the same annotator")
            active.add(key)


def _references(row: dict, items: set[int], people: set[int], fail) -> None:
    if row["item_id"] not in items:
        fail("item_id", f"names item {row['item_id']}, which the backup does not hold")
    if row["annotator_id"] not in people:
        fail("annotator_id", f"names annotator {row['annotator_id']}, who is not in the backup")
