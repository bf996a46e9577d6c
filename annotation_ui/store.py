"""The annotation database (SQLAlchemy): items, responses, annotators, assignments, rankings.

Knows SQL, not Gradio. Guarantees, each enforced by the database rather than by hope:
- every submit is one transaction; nothing is deleted: undo marks a ranking superseded;
- an annotator has at most one active ranking per item (partial unique index);
- an item never gets more than `quota` active rankings: writers are serialized (PostgreSQL:
  a transaction-scoped advisory lock plus `FOR UPDATE` on the item row; SQLite: the write
  lock, taken up front with `BEGIN IMMEDIATE`) and submit counts before inserting;
- so handing out items sees a consistent count of rankings + live reservations, and
  concurrent annotators do not all get the last open slot.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from align.errors import AlignInputError
from annotation_ui import assignment as handout
from annotation_ui.auth import MIN_PASSWORD_LENGTH, hash_password, verify_password

ROLES = ("annotator", "admin")
MAX_RESPONSES = 26  # labelled A..Z on the page
ASSIGN_LOCK_KEY = 7_204_311  # PostgreSQL advisory lock id for handing out items


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Annotator(Base):
    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="annotator")
    password_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(300), unique=True)
    prompt: Mapped[str] = mapped_column(Text)
    source_model: Mapped[str | None] = mapped_column(String(500), nullable=True)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    responses: Mapped[list["Response"]] = relationship(order_by="Response.position", lazy="selectin")


class Response(Base):
    __tablename__ = "responses"
    __table_args__ = (UniqueConstraint("item_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    source_model: Mapped[str | None] = mapped_column(String(500), nullable=True)


class Assignment(Base):
    """An item handed to an annotator: open (reserves a quota slot while its lease lives), done, skipped, released."""

    __tablename__ = "assignments"
    __table_args__ = (
        Index(
            "uq_one_open_assignment",
            "annotator_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    touched_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class RankingRow(Base):
    """One annotator's ranking of one item, ranks in stored response order (1 = best, ties equal)."""

    __tablename__ = "rankings"
    __table_args__ = (
        Index(
            "uq_active_ranking",
            "item_id",
            "annotator_id",
            unique=True,
            sqlite_where=text("superseded_at IS NULL"),
            postgresql_where=text("superseded_at IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    ranks: Mapped[list] = mapped_column(JSON)
    all_bad: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str] = mapped_column(Text, default="")
    seconds_spent: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    superseded_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    superseded_by: Mapped[int | None] = mapped_column(ForeignKey("rankings.id"), nullable=True)


# -- plain records handed to callers (no ORM objects leave this module) ----------------------
@dataclass(frozen=True)
class NewItem:
    prompt: str
    responses: list[str]
    external_id: str
    source_model: str | None = None
    meta: dict | None = None


@dataclass(frozen=True)
class ItemView:
    item_id: int
    external_id: str
    prompt: str
    responses: list[str]  # stored order; the app shows them in assignment.display_order


@dataclass(frozen=True)
class RankingRecord:
    ranking_id: int
    item_id: int
    external_id: str
    prompt: str
    responses: list[str]
    ranks: list[int]
    annotator: str
    all_bad: bool
    comment: str
    seconds_spent: float | None


@dataclass(frozen=True)
class Progress:
    done: int  # this annotator's active rankings
    available: int  # items this annotator could still get (incl. the current one)
    items_left: int  # items overall below quota
    total_items: int


class QuotaFull(AlignInputError):
    """The item already has its quota of rankings."""


class AlreadyRanked(AlignInputError):
    """This annotator already has an active ranking of this item."""


def normalise_url(db: str) -> str:
    """A bare path means an SQLite file; postgresql:// means the psycopg 3 driver."""
    if "://" not in db:
        return f"sqlite:///{Path(db).expanduser().resolve()}"
    if db.startswith("postgresql://") or db.startswith("postgres://"):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    return db


class Store:
    """All reads and writes of the annotation database; every public method is one transaction."""

    def __init__(self, db: str, quota: int = 2, lease_seconds: float = 3600.0, must_exist: bool = False):
        """Open (creating tables if needed) the database; `must_exist` refuses an empty or absent one (readers)."""
        self.url = normalise_url(db)
        self.quota = quota
        self.lease_seconds = lease_seconds
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            self._check_sqlite_dir(must_exist)
            self.engine = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 60})
            _sqlite_pragmas(self.engine)
        else:
            self.engine = create_engine(self.url, pool_size=10, max_overflow=30, pool_pre_ping=True)
        # Writers on SQLite start with BEGIN IMMEDIATE: a read-then-write transaction that only
        # upgrades its lock later can deadlock with another one and fail at once.
        self._writer = self.engine.execution_options(immediate=True)
        try:
            if must_exist:
                self._check_exists()
            Base.metadata.create_all(self.engine)
        except OperationalError as exc:
            raise AlignInputError(f"cannot open annotation database {self.safe_url}: {str(exc.orig).strip()}") from None

    def _check_sqlite_dir(self, must_exist: bool) -> None:
        path = self.url.split("sqlite:///", 1)[-1]
        if must_exist and path and path != ":memory:" and not Path(path).is_file():
            raise AlignInputError(f"annotation database not found: {path}")
        if path and path != ":memory:" and not must_exist:
            Path(path).parent.mkdir(parents=True, exist_ok=True)  # e.g. runs/annotate-demo/ on first use

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    def _check_exists(self) -> None:
        if "items" not in inspect(self.engine).get_table_names():
            raise AlignInputError(
                f"{self.safe_url} holds no annotation tables; import items first (align annotate import)"
            )

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine) as session, session.begin():
            yield session

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    # -- annotators -----------------------------------------------------------------------
    def add_annotator(self, name: str, password: str, role: str = "annotator", replace: bool = False) -> None:
        name = name.strip()
        if not name or len(name) > 100:
            raise AlignInputError("annotator name must be 1..100 characters")
        if role not in ROLES:
            raise AlignInputError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AlignInputError(f"password for {name!r} is too short (at least {MIN_PASSWORD_LENGTH} characters)")
        hashed = hash_password(password)  # slow on purpose: outside the transaction
        try:
            with self._write() as s:
                found = s.scalar(select(Annotator).where(Annotator.name == name))
                if found is not None and not replace:
                    raise AlignInputError(
                        f"annotator {name!r} already exists; pass --replace to set a new password/role"
                    )
                if found is None:
                    s.add(Annotator(name=name, role=role, password_hash=hashed))
                else:
                    found.role, found.password_hash = role, hashed
        except IntegrityError:  # added concurrently by someone else
            raise AlignInputError(
                f"annotator {name!r} already exists; pass --replace to set a new password/role"
            ) from None

    def check_login(self, name: str, password: str) -> bool:
        with self._read() as s:
            stored = s.scalar(select(Annotator.password_hash).where(Annotator.name == name))
        if stored is None:
            verify_password(password, _DUMMY_HASH)  # unknown users cost as much as a wrong password
            return False
        return verify_password(password, stored)

    def role_of(self, name: str) -> str | None:
        with self._read() as s:
            return s.scalar(select(Annotator.role).where(Annotator.name == name))

    def annotators(self) -> list[tuple[str, str]]:
        with self._read() as s:
            return [(n, r) for n, r in s.execute(select(Annotator.name, Annotator.role).order_by(Annotator.id))]

    # -- items ----------------------------------------------------------------------------
    def add_items(self, items: list[NewItem]) -> int:
        """Insert all items or none: a duplicate id (in the batch or already stored) stores nothing."""
        seen: set[str] = set()
        for item in items:
            if item.external_id in seen:
                raise AlignInputError(f"duplicate item id {item.external_id!r} in the batch; item ids must be unique")
            seen.add(item.external_id)
            if len(item.responses) < 2:
                raise AlignInputError(
                    f"item {item.external_id!r} has {len(item.responses)} response(s); ranking needs at least 2"
                )
            if len(item.responses) > MAX_RESPONSES:
                raise AlignInputError(
                    f"item {item.external_id!r} has {len(item.responses)} responses; at most {MAX_RESPONSES} "
                    "can be ranked on one page (split it into several items)"
                )
        ids = list(seen)
        try:
            with self._write() as s:
                for start in range(0, len(ids), 500):  # stay under the database's bound-parameter limit
                    clash = s.scalars(
                        select(Item.external_id).where(Item.external_id.in_(ids[start : start + 500]))
                    ).first()
                    if clash is not None:
                        raise AlignInputError(
                            f"item id {clash!r} is already in the database; nothing was imported (use new ids)"
                        )
                for item in items:
                    row = Item(
                        external_id=item.external_id,
                        prompt=item.prompt,
                        source_model=item.source_model,
                        meta=item.meta or {},
                    )
                    row.responses = [
                        Response(position=i, text=t, source_model=item.source_model)
                        for i, t in enumerate(item.responses)
                    ]
                    s.add(row)
        except IntegrityError:  # the same ids imported concurrently
            raise AlignInputError(
                "some item ids were imported concurrently by another process; nothing was imported"
            ) from None
        return len(items)

    def largest_item(self) -> int:
        """The most responses any item has (0 without items): the page needs that many slots."""
        with self._read() as s:
            counts = s.execute(select(func.count()).select_from(Response).group_by(Response.item_id)).scalars().all()
        return max(counts, default=0)

    def item_ids(self) -> list[str]:
        with self._read() as s:
            return list(s.scalars(select(Item.external_id).order_by(Item.id)))

    # -- handing out items ----------------------------------------------------------------
    def next_item(self, annotator: str) -> ItemView | None:
        """The annotator's open item (resume), else a new one with room under the quota, else None."""
        with self._write() as s:
            self._lock_assignments(s)
            who = self._annotator(s, annotator)
            current = s.scalar(select(Assignment).where(Assignment.annotator_id == who.id, Assignment.status == "open"))
            t = now()
            candidates = self._candidates(s, who.id, t)
            if current is not None:
                mine = next((c for c in candidates if c.item_id == current.item_id), None)
                if handout.may_resume(mine, handout.lease_alive(current.touched_at, t, self.lease_seconds), self.quota):
                    current.touched_at = t
                    return self._view(s, current.item_id)
                current.status, current.closed_at = "released", t
                s.flush()
            chosen = handout.pick_next(candidates, self.quota)
            if chosen is None:
                return None
            s.add(Assignment(item_id=chosen.item_id, annotator_id=who.id, status="open", created_at=t, touched_at=t))
            return self._view(s, chosen.item_id)

    def _candidates(self, s: Session, annotator_id: int, t: datetime) -> list[handout.Candidate]:
        filled = dict(
            s.execute(
                select(RankingRow.item_id, func.count())
                .where(RankingRow.superseded_at.is_(None))
                .group_by(RankingRow.item_id)
            ).all()
        )
        reserved: dict[int, int] = {}
        for item_id, touched in s.execute(
            select(Assignment.item_id, Assignment.touched_at).where(
                Assignment.status == "open", Assignment.annotator_id != annotator_id
            )
        ):
            if handout.lease_alive(touched, t, self.lease_seconds):
                reserved[item_id] = reserved.get(item_id, 0) + 1
        mine = set(
            s.scalars(
                select(RankingRow.item_id).where(
                    RankingRow.annotator_id == annotator_id, RankingRow.superseded_at.is_(None)
                )
            )
        )
        mine |= set(
            s.scalars(
                select(Assignment.item_id).where(
                    Assignment.annotator_id == annotator_id, Assignment.status == "skipped"
                )
            )
        )
        return [
            handout.Candidate(i, filled.get(i, 0), reserved.get(i, 0))
            for i in s.scalars(select(Item.id).order_by(Item.id))
            if i not in mine
        ]

    def _lock_assignments(self, s: Session) -> None:
        if not self.is_sqlite:
            s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ASSIGN_LOCK_KEY})

    # -- rankings -------------------------------------------------------------------------
    def submit(self, annotator: str, item_id: int, ranks: list[int], all_bad: bool = False, comment: str = "") -> int:
        """Store one ranking (ranks in stored response order) in one transaction; returns its id."""
        try:
            with self._write() as s:
                # Same lock as next_item: its count of rankings + reservations spans several
                # statements, which a submit committing in between would make inconsistent.
                self._lock_assignments(s)
                who = self._annotator(s, annotator)
                item = s.scalar(select(Item).where(Item.id == item_id).with_for_update())
                if item is None:
                    raise AlignInputError(f"no item with id {item_id}")
                ranks = handout.validate_ranks(
                    ranks, len(item.responses), where=f"ranking of item {item.external_id!r}"
                )
                if self._has_active(s, item.id, who.id):
                    raise AlreadyRanked(
                        f"{annotator} already ranked item {item.external_id!r}; undo it first to change it"
                    )
                if self._active_count(s, item.id) >= self.quota:
                    raise QuotaFull(
                        f"item {item.external_id!r} already has its {self.quota} rankings; fetch the next item"
                    )
                t = now()
                open_ = s.scalar(
                    select(Assignment).where(
                        Assignment.annotator_id == who.id, Assignment.item_id == item.id, Assignment.status == "open"
                    )
                )
                if open_ is None:
                    raise AlignInputError(
                        f"item {item.external_id!r} is not assigned to {annotator}; fetch your next item first"
                    )
                spent = (t - open_.created_at).total_seconds()
                ranking = RankingRow(
                    item_id=item.id,
                    annotator_id=who.id,
                    ranks=ranks,
                    all_bad=bool(all_bad),
                    comment=comment or "",
                    seconds_spent=spent,
                    created_at=t,
                )
                s.add(ranking)
                s.flush()
                open_.status, open_.closed_at = "done", t
                for old in s.scalars(
                    select(RankingRow).where(
                        RankingRow.item_id == item.id,
                        RankingRow.annotator_id == who.id,
                        RankingRow.superseded_at.is_not(None),
                        RankingRow.superseded_by.is_(None),
                    )
                ):
                    old.superseded_by = ranking.id
                return ranking.id
        except IntegrityError:  # a concurrent double submit by the same annotator lost the race
            raise AlreadyRanked(f"{annotator} already ranked item {item_id}") from None

    def skip(self, annotator: str, item_id: int) -> None:
        """Close the annotator's open assignment of this item; they are not offered it again."""
        with self._write() as s:
            who = self._annotator(s, annotator)
            open_ = s.scalar(select(Assignment).where(Assignment.annotator_id == who.id, Assignment.status == "open"))
            if open_ is None or open_.item_id != item_id:
                raise AlignInputError(
                    f"item {item_id} is not the item assigned to {annotator}; reload to get your current item"
                )
            open_.status, open_.closed_at = "skipped", now()

    def undo_last(self, annotator: str) -> int | None:
        """Supersede the annotator's newest active ranking and hand its item back to them; returns the item id."""
        with self._write() as s:
            self._lock_assignments(s)
            who = self._annotator(s, annotator)
            last = s.scalar(
                select(RankingRow)
                .where(RankingRow.annotator_id == who.id, RankingRow.superseded_at.is_(None))
                .order_by(RankingRow.created_at.desc(), RankingRow.id.desc())
                .limit(1)
            )
            if last is None:
                return None
            t = now()
            last.superseded_at = t
            for open_ in s.scalars(
                select(Assignment).where(Assignment.annotator_id == who.id, Assignment.status == "open")
            ):
                open_.status, open_.closed_at = "released", t
            s.flush()
            s.add(Assignment(item_id=last.item_id, annotator_id=who.id, status="open", created_at=t, touched_at=t))
            return last.item_id

    # -- reading back ---------------------------------------------------------------------
    def progress(self, annotator: str) -> Progress:
        with self._read() as s:
            who = self._annotator(s, annotator)
            t = now()
            done = (
                s.scalar(
                    select(func.count())
                    .select_from(RankingRow)
                    .where(RankingRow.annotator_id == who.id, RankingRow.superseded_at.is_(None))
                )
                or 0
            )
            candidates = self._candidates(s, who.id, t)
            current = s.scalar(
                select(Assignment.item_id).where(Assignment.annotator_id == who.id, Assignment.status == "open")
            )
            available = sum(1 for c in candidates if handout.has_room(c, self.quota) or c.item_id == current)
            items_left = sum(1 for c in self._all_counts(s) if c < self.quota)
            total = s.scalar(select(func.count()).select_from(Item)) or 0
        return Progress(done=done, available=available, items_left=items_left, total_items=total)

    def _all_counts(self, s: Session) -> list[int]:
        filled = dict(
            s.execute(
                select(RankingRow.item_id, func.count())
                .where(RankingRow.superseded_at.is_(None))
                .group_by(RankingRow.item_id)
            ).all()
        )
        return [filled.get(i, 0) for i in s.scalars(select(Item.id))]

    def rankings(self, annotator: str | None = None, include_superseded: bool = False) -> list[RankingRecord]:
        """Active rankings (all, or one annotator's), oldest first."""
        with self._read() as s:
            query = select(RankingRow, Annotator.name).join(Annotator, Annotator.id == RankingRow.annotator_id)
            if not include_superseded:
                query = query.where(RankingRow.superseded_at.is_(None))
            if annotator is not None:
                query = query.where(Annotator.name == annotator)
            rows = s.execute(query.order_by(RankingRow.id)).all()
            wanted = sorted({r.item_id for r, _ in rows})
            items = {
                i.id: i
                for start in range(0, len(wanted), 500)
                for i in s.scalars(select(Item).where(Item.id.in_(wanted[start : start + 500])))
            }
            return [
                RankingRecord(
                    r.id,
                    r.item_id,
                    items[r.item_id].external_id,
                    items[r.item_id].prompt,
                    [x.text for x in items[r.item_id].responses],
                    list(r.ranks),
                    name,
                    r.all_bad,
                    r.comment,
                    r.seconds_spent,
                )
                for r, name in rows
            ]

    def item_view(self, item_id: int) -> ItemView:
        with self._read() as s:
            return self._view(s, item_id)

    def overview(self) -> dict[str, Any]:
        """Admin figures: per-annotator counts and item completion."""
        with self._read() as s:
            per = {
                name: {"role": role, "done": 0, "superseded": 0, "skipped": 0}
                for name, role in s.execute(select(Annotator.name, Annotator.role).order_by(Annotator.id))
            }
            for name, active, n in s.execute(
                select(Annotator.name, RankingRow.superseded_at.is_(None), func.count())
                .join(RankingRow, RankingRow.annotator_id == Annotator.id)
                .group_by(Annotator.name, RankingRow.superseded_at.is_(None))
            ):
                per[name]["done" if active else "superseded"] += n
            for name, n in s.execute(
                select(Annotator.name, func.count())
                .join(Assignment, Assignment.annotator_id == Annotator.id)
                .where(Assignment.status == "skipped")
                .group_by(Annotator.name)
            ):
                per[name]["skipped"] = n
            counts = self._all_counts(s)
        return {
            "annotators": per,
            "items": len(counts),
            "items_complete": sum(c >= self.quota for c in counts),
            "items_started": sum(0 < c < self.quota for c in counts),
            "rankings": sum(counts),
            "quota": self.quota,
        }

    # -- helpers --------------------------------------------------------------------------
    def _annotator(self, s: Session, name: str) -> Annotator:
        who = s.scalar(select(Annotator).where(Annotator.name == name))
        if who is None:
            raise AlignInputError(f"unknown annotator {name!r}; add them with `align annotate add-user`")
        return who

    def _has_active(self, s: Session, item_id: int, annotator_id: int) -> bool:
        return (
            s.scalar(
                select(RankingRow.id).where(
                    RankingRow.item_id == item_id,
                    RankingRow.annotator_id == annotator_id,
                    RankingRow.superseded_at.is_(None),
                )
            )
            is not None
        )

    def _active_count(self, s: Session, item_id: int) -> int:
        return (
            s.scalar(
                select(func.count())
                .select_from(RankingRow)
                .where(RankingRow.item_id == item_id, RankingRow.superseded_at.is_(None))
            )
            or 0
        )

    def _view(self, s: Session, item_id: int) -> ItemView:
        item = s.get(Item, item_id)
        if item is None:
            raise AlignInputError(f"no item with id {item_id}")
        return ItemView(item.id, item.external_id, item.prompt, [r.text for r in item.responses])


_DUMMY_HASH = hash_password("timing-equaliser")


def _sqlite_pragmas(engine) -> None:
    """WAL (readers never block the writer), a busy timeout, foreign keys; BEGIN IMMEDIATE for writers."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let SQLAlchemy's begin event emit BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")
