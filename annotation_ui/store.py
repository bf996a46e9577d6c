"""The annotation database (SQLAlchemy): items, responses, annotators, assignments, rankings.

Knows SQL, not Gradio. Guarantees, each enforced by the database rather than by hope:
- every submit is one transaction; nothing is deleted: undo marks a ranking superseded;
- an annotator has at most one active ranking per item (partial unique index);
- an item never gets more than `quota` active rankings: every change to an item's count of
  rankings + reservations happens under that item's lock (PostgreSQL: `FOR UPDATE` on its
  row, so writers of different items run side by side, in any number of app processes;
  SQLite: its single write lock, taken up front with `BEGIN IMMEDIATE`), and submit and
  hand-out count under it before inserting;
- so concurrent annotators do not all get the last open slot of an item.
Hand-outs (reservations) commit without waiting for the disk on PostgreSQL: a crash can lose
a reservation, never a ranking.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
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
    bindparam,
    case,
    create_engine,
    event,
    func,
    insert,
    inspect,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from align.errors import AlignInputError, AlignRunError
from annotation_ui import assignment as handout
from annotation_ui.auth import MIN_PASSWORD_LENGTH, hash_password, verify_password

ROLES = ("annotator", "admin")
MAX_RESPONSES = 26  # labelled A..Z on the page
VIEW_CACHE_SIZE = 100_000  # items remembered per process (prompt + responses each)
HANDOUT_TRIES = 1000  # PostgreSQL: each failed try means another writer filled or held the item


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


# -- the hot paths' statements, built once: building a statement costs more Python than the
# database needs to run it (profiled under 50 annotators). Bind parameters: me (annotator id),
# cutoff (leases touched before it have lapsed), quota, item.
_FILLED = (
    select(RankingRow.item_id, func.count().label("n"))
    .where(RankingRow.superseded_at.is_(None))
    .group_by(RankingRow.item_id)
    .subquery()
)
_RESERVED = (
    select(Assignment.item_id, func.count().label("n"))
    .where(
        Assignment.status == "open",
        Assignment.annotator_id != bindparam("me"),
        Assignment.touched_at > bindparam("cutoff"),
    )
    .group_by(Assignment.item_id)
    .subquery()
)
_N_FILLED, _N_RESERVED = func.coalesce(_FILLED.c.n, 0), func.coalesce(_RESERVED.c.n, 0)
_LOAD = _N_FILLED + _N_RESERVED
_MY_OPEN_ITEM = select(Assignment.item_id).where(
    Assignment.annotator_id == bindparam("me"), Assignment.status == "open"
)
# (item id, filled, reserved) of every item this annotator has neither ranked nor skipped:
# filled = active rankings, reserved = other annotators' open assignments whose lease lives
# (handout.lease_alive in SQL: touched after the cutoff)
_CANDIDATES = (
    select(Item.id, _N_FILLED, _N_RESERVED)
    .outerjoin(_FILLED, _FILLED.c.item_id == Item.id)
    .outerjoin(_RESERVED, _RESERVED.c.item_id == Item.id)
    .where(
        Item.id.not_in(
            select(RankingRow.item_id).where(
                RankingRow.annotator_id == bindparam("me"), RankingRow.superseded_at.is_(None)
            )
        ),
        Item.id.not_in(
            select(Assignment.item_id).where(Assignment.annotator_id == bindparam("me"), Assignment.status == "skipped")
        ),
    )
)
# handout.pick_next's choice made by the database: room left, closest to complete, then oldest
_NEXT_CANDIDATE = _CANDIDATES.where(_LOAD < bindparam("quota")).order_by(_LOAD.desc(), Item.id).limit(1)
# PostgreSQL: the same, skipping items whose row another writer holds (so concurrent hand-outs
# spread over items instead of queueing on one), and locking the one chosen
_NEXT_CANDIDATE_LOCKED = _NEXT_CANDIDATE.with_for_update(skip_locked=True, of=Item)
_ONE_CANDIDATE = _CANDIDATES.where(Item.id == bindparam("item"))
_PROGRESS = select(
    select(func.count())
    .select_from(RankingRow)
    .where(RankingRow.annotator_id == bindparam("me"), RankingRow.superseded_at.is_(None))
    .scalar_subquery(),
    select(func.count())
    .select_from(_CANDIDATES.where((_LOAD < bindparam("quota")) | Item.id.in_(_MY_OPEN_ITEM)).subquery())
    .scalar_subquery(),
    select(func.count())
    .select_from(Item)
    .outerjoin(_FILLED, _FILLED.c.item_id == Item.id)
    .where(_N_FILLED < bindparam("quota"))
    .scalar_subquery(),
    select(func.count()).select_from(Item).scalar_subquery(),
)
_ALL_COUNTS = select(_N_FILLED).select_from(Item).outerjoin(_FILLED, _FILLED.c.item_id == Item.id)
_LOCK_ITEM = select(Item.id).where(Item.id == bindparam("item")).with_for_update()
_OPEN_ASSIGNMENT = select(Assignment.id, Assignment.item_id, Assignment.touched_at, Assignment.created_at).where(
    Assignment.annotator_id == bindparam("me"), Assignment.status == "open"
)
_ITEM_COUNTS = select(
    func.count(), func.coalesce(func.sum(case((RankingRow.annotator_id == bindparam("me"), 1), else_=0)), 0)
).where(RankingRow.item_id == bindparam("item"), RankingRow.superseded_at.is_(None))
_CLOSE_ASSIGNMENT = (
    update(Assignment)
    .where(Assignment.id == bindparam("assignment"))
    .values(status=bindparam("status"), closed_at=bindparam("t"))
)
_TOUCH_ASSIGNMENT = update(Assignment).where(Assignment.id == bindparam("assignment")).values(touched_at=bindparam("t"))
_NEW_ASSIGNMENT = insert(Assignment).values(
    item_id=bindparam("item"),
    annotator_id=bindparam("me"),
    status="open",
    created_at=bindparam("t"),
    touched_at=bindparam("t"),
)
_LINK_SUPERSEDED = (
    update(RankingRow)
    .where(
        RankingRow.item_id == bindparam("item"),
        RankingRow.annotator_id == bindparam("me"),
        RankingRow.superseded_at.is_not(None),
        RankingRow.superseded_by.is_(None),
    )
    .values(superseded_by=bindparam("ranking"))
)


class _Taken(Exception):
    """The item chosen for hand-out filled meanwhile (PostgreSQL): roll back and choose again."""


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
            # Connections kept open for the app's worker threads: an overflow connection is closed
            # when handed back, and opening one (a new server process) cost more than the query.
            # 40 per app process leaves room for two processes under PostgreSQL's default 100.
            self.engine = create_engine(self.url, pool_size=32, max_overflow=8, pool_pre_ping=True)
        # Writers on SQLite start with BEGIN IMMEDIATE: a read-then-write transaction that only
        # upgrades its lock later can deadlock with another one and fail at once.
        self._writer = self.engine.execution_options(immediate=True)
        self._local_writer = threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        self._annotator_ids: dict[str, int] = {}
        self._views: dict[int, ItemView] = {}
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
        # SQLite has one writer at a time; threads of this process queue on a lock (woken the
        # moment it is free) instead of in SQLite's busy handler, which polls with sleeps of up
        # to 100 ms and so stretched every wait under load. Other processes still use the handler.
        with self._local_writer, Session(self._writer, expire_on_commit=False) as session, session.begin():
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
        """The annotator's open item (resume), else a new one with room under the quota, else None.

        On PostgreSQL the chosen item's row is locked and its room counted again under the lock
        (submits and other hand-outs of that item wait on the same lock), so only hand-outs of
        the same item wait for each other; if it filled meanwhile, the next one is tried."""
        for _ in range(HANDOUT_TRIES):
            try:
                with self._write() as s:
                    return self._hand_out(s, annotator)
            except _Taken:  # rolled back, so this item's lock is dropped before trying another
                continue
            except IntegrityError:  # the same annotator's other request opened an assignment first
                continue
        raise AlignRunError(f"could not hand out an item to {annotator} after {HANDOUT_TRIES} tries; try again")

    def _hand_out(self, s: Session, annotator: str) -> ItemView | None:
        me = self._annotator_id(s, annotator)
        t = now()
        where = {"me": me, "cutoff": t - timedelta(seconds=self.lease_seconds), "quota": self.quota}
        if not self.is_sqlite:  # a lost reservation costs nothing: no need to wait for the disk
            s.execute(text("SET LOCAL synchronous_commit TO OFF"))
        current = s.execute(_OPEN_ASSIGNMENT, {"me": me}).first()
        if current is not None:
            self._lock_item(s, current.item_id)
            row = s.execute(_ONE_CANDIDATE, where | {"item": current.item_id}).first()
            mine = handout.Candidate(*row) if row else None
            if handout.may_resume(mine, handout.lease_alive(current.touched_at, t, self.lease_seconds), self.quota):
                s.execute(_TOUCH_ASSIGNMENT, {"assignment": current.id, "t": t})
                return self._view(s, current.item_id)
            s.execute(_CLOSE_ASSIGNMENT, {"assignment": current.id, "status": "released", "t": t})
        row = s.execute(_NEXT_CANDIDATE if self.is_sqlite else _NEXT_CANDIDATE_LOCKED, where).first()
        if row is None:
            if not self.is_sqlite and s.execute(_NEXT_CANDIDATE, where).first() is not None:
                raise _Taken  # every item with room is being written right now: look again
            return None
        if not self.is_sqlite:  # counted before the lock: count again (SQLite's one writer needs not)
            again = s.execute(_ONE_CANDIDATE, where | {"item": row[0]}).first()
            if again is None or not handout.has_room(handout.Candidate(*again), self.quota):
                raise _Taken
        s.execute(_NEW_ASSIGNMENT, {"item": row[0], "me": me, "t": t})
        return self._view(s, row[0])

    def _candidates(self, s: Session, annotator_id: int, t: datetime) -> list[handout.Candidate]:
        """Every candidate of this annotator, by item id (the hot paths ask the database for one)."""
        where = {"me": annotator_id, "cutoff": t - timedelta(seconds=self.lease_seconds)}
        return [handout.Candidate(*row) for row in s.execute(_CANDIDATES.order_by(Item.id), where)]

    def _lock_item(self, s: Session, item_id: int) -> None:
        """PostgreSQL: lock the item's row until commit; every change to its counts takes it.
        SQLite needs nothing: its writers run one at a time (BEGIN IMMEDIATE)."""
        if not self.is_sqlite:
            s.execute(_LOCK_ITEM, {"item": item_id})

    # -- rankings -------------------------------------------------------------------------
    def submit(self, annotator: str, item_id: int, ranks: list[int], all_bad: bool = False, comment: str = "") -> int:
        """Store one ranking (ranks in stored response order) in one transaction; returns its id."""
        try:
            with self._write() as s:
                # The item's lock, as in next_item: its count of rankings + reservations spans
                # several statements, which a submit committing in between would make inconsistent.
                self._lock_item(s, item_id)
                me = self._annotator_id(s, annotator)
                item = self._view(s, item_id)
                ranks = handout.validate_ranks(
                    ranks, len(item.responses), where=f"ranking of item {item.external_id!r}"
                )
                active, mine = s.execute(_ITEM_COUNTS, {"item": item_id, "me": me}).one()
                if mine:
                    raise AlreadyRanked(
                        f"{annotator} already ranked item {item.external_id!r}; undo it first to change it"
                    )
                if active >= self.quota:
                    raise QuotaFull(
                        f"item {item.external_id!r} already has its {self.quota} rankings; fetch the next item"
                    )
                t = now()
                open_ = s.execute(_OPEN_ASSIGNMENT, {"me": me}).first()
                if open_ is None or open_.item_id != item_id:
                    raise AlignInputError(
                        f"item {item.external_id!r} is not assigned to {annotator}; fetch your next item first"
                    )
                ranking = RankingRow(
                    item_id=item_id,
                    annotator_id=me,
                    ranks=ranks,
                    all_bad=bool(all_bad),
                    comment=comment or "",
                    seconds_spent=(t - open_.created_at).total_seconds(),
                    created_at=t,
                )
                s.add(ranking)
                s.flush()
                s.execute(_CLOSE_ASSIGNMENT, {"assignment": open_.id, "status": "done", "t": t})
                s.execute(_LINK_SUPERSEDED, {"item": item_id, "me": me, "ranking": ranking.id})
                return ranking.id
        except IntegrityError:  # a concurrent double submit by the same annotator lost the race
            raise AlreadyRanked(f"{annotator} already ranked item {item_id}") from None

    def skip(self, annotator: str, item_id: int) -> None:
        """Close the annotator's open assignment of this item; they are not offered it again."""
        with self._write() as s:
            me = self._annotator_id(s, annotator)
            open_ = s.scalar(select(Assignment).where(Assignment.annotator_id == me, Assignment.status == "open"))
            if open_ is None or open_.item_id != item_id:
                raise AlignInputError(
                    f"item {item_id} is not the item assigned to {annotator}; reload to get your current item"
                )
            open_.status, open_.closed_at = "skipped", now()

    def undo_last(self, annotator: str) -> int | None:
        """Supersede the annotator's newest active ranking and hand its item back to them; returns the item id."""
        with self._write() as s:
            me = self._annotator_id(s, annotator)
            last = s.scalar(
                select(RankingRow)
                .where(RankingRow.annotator_id == me, RankingRow.superseded_at.is_(None))
                .order_by(RankingRow.created_at.desc(), RankingRow.id.desc())
                .limit(1)
            )
            if last is None:
                return None
            self._lock_item(s, last.item_id)
            t = now()
            last.superseded_at = t
            for open_ in s.scalars(
                select(Assignment).where(Assignment.annotator_id == me, Assignment.status == "open")
            ):
                open_.status, open_.closed_at = "released", t
            s.flush()
            s.add(Assignment(item_id=last.item_id, annotator_id=me, status="open", created_at=t, touched_at=t))
            return last.item_id

    # -- reading back ---------------------------------------------------------------------
    def progress(self, annotator: str) -> Progress:
        """available counts the annotator's current item even when its slot is the last one."""
        with self._read() as s:
            me = self._annotator_id(s, annotator)
            cutoff = now() - timedelta(seconds=self.lease_seconds)
            done, available, items_left, total = s.execute(
                _PROGRESS, {"me": me, "cutoff": cutoff, "quota": self.quota}
            ).one()
        return Progress(done=done, available=available, items_left=items_left, total_items=total)

    def _all_counts(self, s: Session) -> list[int]:
        """Active rankings of every item."""
        return list(s.scalars(_ALL_COUNTS))

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
    def _annotator_id(self, s: Session, name: str) -> int:
        """The annotator's id; remembered, as ids never change and nobody is ever deleted."""
        if name not in self._annotator_ids:
            found = s.scalar(select(Annotator.id).where(Annotator.name == name))
            if found is None:
                raise AlignInputError(f"unknown annotator {name!r}; add them with `align annotate add-user`")
            self._annotator_ids[name] = found
        return self._annotator_ids[name]

    def _view(self, s: Session, item_id: int) -> ItemView:
        """An item as shown; remembered, as items and their responses are never changed once stored."""
        view = self._views.get(item_id)
        if view is None:
            item = s.get(Item, item_id)
            if item is None:
                raise AlignInputError(f"no item with id {item_id}")
            view = ItemView(item.id, item.external_id, item.prompt, [r.text for r in item.responses])
            if len(self._views) < VIEW_CACHE_SIZE:
                self._views[item_id] = view
        return view


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
