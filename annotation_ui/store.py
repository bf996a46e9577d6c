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
import functools
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from sqlalchemy import (
    DDL,
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
    create_engine,
    event,
    func,
    insert,
    inspect,
    literal,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from align.errors import AlignInputError, AlignRunError
from annotation_ui import assignment as handout
from annotation_ui.auth import MIN_PASSWORD_LENGTH, hash_password, verify_password

ROLES = ("annotator", "admin")
# The version of the tables below, written into every backup (annotation_ui.backup): 1 before
# annotators.disabled_at, 2 since. A database or backup of an older version is upgraded by
# upgrade_schema; one of a newer version is refused.
SCHEMA_VERSION = 2
MAX_RESPONSES = 26  # labelled A..Z on the page
VIEW_CACHE_SIZE = 100_000  # items remembered per process (prompt + responses each)
HANDOUT_TRIES = 1000  # PostgreSQL: each failed try means another writer filled or held the item


T = TypeVar("T")


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
    # set by `align annotate remove-user`: no login, sessions ended; the rankings stay
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(300), unique=True)
    prompt: Mapped[str] = mapped_column(Text)
    source_model: Mapped[str | None] = mapped_column(String(500), nullable=True)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    # active rankings of this item, kept by the database's triggers on rankings (_COUNTING_TRIGGERS):
    # the hand-out reads it instead of counting every ranking of every item on each request
    n_active: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
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
        # the live reservations of each item: at most one row per annotator, however many items
        Index(
            "ix_open_assignments_by_item",
            "item_id",
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
# cutoff (leases touched before it have lapsed), quota, item. An item's filled count is its
# n_active column; its reservations are counted from the open assignments (one per annotator at
# most), so no statement here reads every ranking.
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
_N_RESERVED = func.coalesce(_RESERVED.c.n, 0)
_LOAD = Item.n_active + _N_RESERVED
_MY_OPEN_ITEM = select(Assignment.item_id).where(
    Assignment.annotator_id == bindparam("me"), Assignment.status == "open"
)
# (item id, filled, reserved) of every item this annotator has neither ranked nor skipped:
# filled = active rankings, reserved = other annotators' open assignments whose lease lives
# (handout.lease_alive in SQL: touched after the cutoff)
_CANDIDATES = (
    select(Item.id, Item.n_active, _N_RESERVED)
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
_PROGRESS_COLUMNS = (
    select(func.count())
    .select_from(RankingRow)
    .where(RankingRow.annotator_id == bindparam("me"), RankingRow.superseded_at.is_(None))
    .scalar_subquery(),
    select(func.count())
    .select_from(_CANDIDATES.where((_LOAD < bindparam("quota")) | Item.id.in_(_MY_OPEN_ITEM)).subquery())
    .scalar_subquery(),
    select(func.count()).select_from(Item).where(Item.n_active < bindparam("quota")).scalar_subquery(),
    select(func.count()).select_from(Item).scalar_subquery(),
)
_PROGRESS = select(*_PROGRESS_COLUMNS)


def _my_open(column):
    """One column of this annotator's open assignment (there is at most one), or NULL."""
    return (
        select(column).where(Assignment.annotator_id == bindparam("me"), Assignment.status == "open").scalar_subquery()
    )


# a fetch's first statement: the annotator's open assignment, and the progress figures (which the
# hand-out that follows does not change: an annotator's own reservation never counts against them)
_FETCH_START = select(_my_open(Assignment.id), _my_open(Assignment.item_id), _my_open(Assignment.touched_at))
_FETCH_START_WITH_PROGRESS = _FETCH_START.add_columns(*_PROGRESS_COLUMNS)
# a new reservation, made only if the item still has room: counted in the same statement, under
# the item's lock (PostgreSQL) or SQLite's one writer, so nobody can change the count meanwhile
_ROOM = (
    select(Item.n_active).where(Item.id == bindparam("item")).scalar_subquery()
    + select(func.count())
    .select_from(Assignment)
    .where(
        Assignment.item_id == bindparam("item"),
        Assignment.status == "open",
        Assignment.annotator_id != bindparam("me"),
        Assignment.touched_at > bindparam("cutoff"),
    )
    .scalar_subquery()
) < bindparam("quota")
_NEW_ASSIGNMENT_IF_ROOM = (
    insert(Assignment)
    .from_select(
        ["item_id", "annotator_id", "status", "created_at", "touched_at"],
        select(
            bindparam("item", type_=Integer),
            bindparam("me", type_=Integer),
            literal("open", String),
            bindparam("t", type_=DateTime),
            bindparam("t", type_=DateTime),
        ).where(_ROOM),
    )
    .returning(Assignment.id)
)
_ALL_COUNTS = select(Item.n_active)
_LOCK_ITEM = select(Item.id).where(Item.id == bindparam("item")).with_for_update()
# submit's checks in one statement, the item's row locked (PostgreSQL): its active rankings,
# whether this annotator has one of them, and whether an undone ranking of theirs awaits a link
_MINE = (RankingRow.item_id == bindparam("item")) & (RankingRow.annotator_id == bindparam("me"))
_SUBMIT_CHECK = select(
    Item.n_active,
    select(RankingRow.id).where(_MINE, RankingRow.superseded_at.is_(None)).exists(),
    select(RankingRow.id)
    .where(_MINE, RankingRow.superseded_at.is_not(None), RankingRow.superseded_by.is_(None))
    .exists(),
    _my_open(Assignment.id),
    _my_open(Assignment.item_id),
    _my_open(Assignment.created_at),
).where(Item.id == bindparam("item"))
_SUBMIT_CHECK_LOCKED = _SUBMIT_CHECK.with_for_update(of=Item)
_NEW_RANKING = insert(RankingRow.__table__).returning(RankingRow.__table__.c.id)
_ITEM_TEXT = select(Item.external_id, Item.prompt).where(Item.id == bindparam("item"))
_ITEM_RESPONSES = select(Response.text).where(Response.item_id == bindparam("item")).order_by(Response.position)
_CLOSE_ASSIGNMENT = (
    update(Assignment)
    .where(Assignment.id == bindparam("assignment"))
    .values(status=bindparam("status"), closed_at=bindparam("t"))
)
_TOUCH_ASSIGNMENT = update(Assignment).where(Assignment.id == bindparam("assignment")).values(touched_at=bindparam("t"))
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


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None for another database or an in-memory one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def normalise_url(db: str) -> str:
    """A bare path means an SQLite file; postgresql:// means the psycopg 3 driver."""
    if "://" not in db:
        return f"sqlite:///{Path(db).expanduser().resolve()}"
    if db.startswith("postgresql://") or db.startswith("postgres://"):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    return db


def _reconnecting(method: Callable[..., T]) -> Callable[..., T]:
    """Run a store call again, once, when its connection turned out dead (the database restarted
    or dropped an idle connection): SQLAlchemy then drops every pooled connection, so the second
    try gets a fresh one. Safe as each call is one transaction: one that failed did not commit,
    or, had the connection died during the commit itself, the retried submit says it was stored."""

    @functools.wraps(method)
    def call(self: "Store", *args, **kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            return method(self, *args, **kwargs)

    return call


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
            # No pre-ping (a round trip per transaction, a sixth of a fetch + submit): a connection
            # that died is found by its first statement instead, and the call is retried once
            # (_reconnecting).
            self.engine = create_engine(self.url, pool_size=24, max_overflow=0)
        # Writers on SQLite start with BEGIN IMMEDIATE: a read-then-write transaction that only
        # upgrades its lock later can deadlock with another one and fail at once.
        self._writer = self.engine.execution_options(immediate=True)
        # Hand-outs and reads commit without waiting for the disk (PostgreSQL): a crash can lose a
        # reservation, never a ranking. Their own connections, so no SET per transaction.
        self._lazy = (
            self.engine
            if self.is_sqlite
            else create_engine(
                self.url, pool_size=16, max_overflow=0, connect_args={"options": "-c synchronous_commit=off"}
            )
        )
        self._lazy_writer = self._lazy.execution_options(immediate=True)
        self._local_writer = threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        self._annotator_ids: dict[str, int] = {}
        self._views: dict[int, ItemView] = {}
        try:
            if must_exist:
                self._check_exists()
            Base.metadata.create_all(self.engine)
            upgrade_schema(self.engine)
        except OperationalError as exc:
            raise AlignInputError(f"cannot open annotation database {self.safe_url}: {str(exc.orig).strip()}") from None

    def _check_sqlite_dir(self, must_exist: bool) -> None:
        path = sqlite_path(self.url)
        if path is None:
            return
        if must_exist and not path.is_file():
            raise AlignInputError(f"annotation database not found: {path}")
        if not must_exist:
            path.parent.mkdir(parents=True, exist_ok=True)  # e.g. runs/annotate-demo/ on first use

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
        self._lazy.dispose()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self._lazy) as session, session.begin():
            yield session

    @contextlib.contextmanager
    def _transaction(self, lazy: bool = False) -> Iterator[Connection]:
        """_write's hot-path twin on a plain connection: the ORM session's bookkeeping was a
        sixth of the server's time per fetch + submit, for statements that need none of it."""
        with self._local_writer, (self._lazy_writer if lazy else self._writer).begin() as connection:
            yield connection

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        # SQLite has one writer at a time; threads of this process queue on a lock (woken the
        # moment it is free) instead of in SQLite's busy handler, which polls with sleeps of up
        # to 100 ms and so stretched every wait under load. Other processes still use the handler.
        with self._local_writer, Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    # -- annotators -----------------------------------------------------------------------
    def add_annotator(self, name: str, password: str, role: str = "annotator", replace: bool = False) -> None:
        """Create an account, or with `replace` set a new password/role (and re-enable a removed
        one). The changed credentials end the account's open sessions (annotation_ui.sessions)."""
        name = name.strip()
        if not name or len(name) > 100:
            raise AlignInputError("annotator name must be 1..100 characters")
        if role not in ROLES:
            raise AlignInputError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise AlignInputError(
                f"password for {name!r} is too short: {len(password)} characters, at least {MIN_PASSWORD_LENGTH} "
                "(a longer passphrase is better; accounts made earlier keep their passwords)"
            )
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
                    found.role, found.password_hash, found.disabled_at = role, hashed, None
        except IntegrityError:  # added concurrently by someone else
            raise AlignInputError(
                f"annotator {name!r} already exists; pass --replace to set a new password/role"
            ) from None

    def disable_annotator(self, name: str) -> None:
        """Refuse the account's logins and end its sessions; its rankings stay (nothing is deleted)."""
        with self._write() as s:
            found = s.scalar(select(Annotator).where(Annotator.name == name.strip()))
            if found is None:
                known = ", ".join(n for n, _ in self.annotators()) or "none yet"
                raise AlignInputError(f"no annotator {name!r} (accounts: {known})")
            if found.disabled_at is None:
                found.disabled_at = now()

    @_reconnecting
    def check_login(self, name: str, password: str) -> bool:
        with self._read() as s:
            stored = s.scalar(
                select(Annotator.password_hash).where(Annotator.name == name, Annotator.disabled_at.is_(None))
            )
        if stored is None:
            verify_password(password, _DUMMY_HASH)  # unknown users cost as much as a wrong password
            return False
        return verify_password(password, stored)

    @_reconnecting
    def credential_stamp(self, name: str) -> str | None:
        """What a session of `name` was opened under: changes when the password or role changes,
        None once the account is removed (disabled) or gone. Sessions compare it on use."""
        with self._read() as s:
            row = s.execute(
                select(Annotator.role, Annotator.password_hash).where(
                    Annotator.name == name, Annotator.disabled_at.is_(None)
                )
            ).one_or_none()
        return None if row is None else f"{row.role}${row.password_hash}"

    @_reconnecting
    def role_of(self, name: str) -> str | None:
        with self._read() as s:
            return s.scalar(select(Annotator.role).where(Annotator.name == name))

    def annotators(self, include_disabled: bool = False) -> list[tuple[str, str]]:
        """(name, role) of every account that may log in (and the removed ones, when asked)."""
        query = select(Annotator.name, Annotator.role).order_by(Annotator.id)
        if not include_disabled:
            query = query.where(Annotator.disabled_at.is_(None))
        with self._read() as s:
            return [(n, r) for n, r in s.execute(query)]

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
    @_reconnecting
    def next_item(self, annotator: str) -> ItemView | None:
        """The annotator's open item (resume), else a new one with room under the quota, else None.

        On PostgreSQL the chosen item's row is locked and its room counted again under the lock
        (submits and other hand-outs of that item wait on the same lock), so only hand-outs of
        the same item wait for each other; if it filled meanwhile, the next one is tried."""
        return self._next_item(annotator, with_progress=False)[0]

    @_reconnecting
    def fetch(self, annotator: str) -> tuple[ItemView | None, Progress]:
        """next_item and progress (what the app shows with each item), in one transaction and
        with no statement more: progress rides on the hand-out's first one."""
        return self._next_item(annotator, with_progress=True)

    def _next_item(self, annotator: str, with_progress: bool) -> tuple[ItemView | None, Progress | None]:
        for attempt in range(HANDOUT_TRIES):
            try:
                with self._transaction(lazy=True) as c:
                    return self._hand_out(c, annotator, with_progress)
            except _Taken:  # rolled back, so this item's lock is dropped before trying another
                # the items left are being written by others (the last ones of a batch, wanted by
                # everybody): wait a moment, a little longer each time, instead of asking again at once
                time.sleep(random.uniform(0.5, 1.5) * min(0.02, 0.001 * (attempt + 1)))
                continue
            except IntegrityError:  # the same annotator's other request opened an assignment first
                continue
        raise AlignRunError(f"could not hand out an item to {annotator} after {HANDOUT_TRIES} tries; try again")

    def _hand_out(self, c: Connection, annotator: str, with_progress: bool) -> tuple[ItemView | None, Progress | None]:
        """Three statements in the usual case: the open assignment (and progress), the next
        candidate (locked), the reservation if the item still has room."""
        me = self._annotator_id(c, annotator)
        t = now()
        where = {"me": me, "cutoff": t - timedelta(seconds=self.lease_seconds), "quota": self.quota}
        row = c.execute(_FETCH_START_WITH_PROGRESS if with_progress else _FETCH_START, where).one()
        progress = Progress(*row[3:]) if with_progress else None
        current_id, current_item, touched_at = row[:3]
        if current_id is not None:
            self._lock_item(c, current_item)
            found = c.execute(_ONE_CANDIDATE, where | {"item": current_item}).first()
            mine = handout.Candidate(*found) if found else None
            if handout.may_resume(mine, handout.lease_alive(touched_at, t, self.lease_seconds), self.quota):
                c.execute(_TOUCH_ASSIGNMENT, {"assignment": current_id, "t": t})
                return self._view(c, current_item), progress
            c.execute(_CLOSE_ASSIGNMENT, {"assignment": current_id, "status": "released", "t": t})
        chosen = c.execute(_NEXT_CANDIDATE if self.is_sqlite else _NEXT_CANDIDATE_LOCKED, where).first()
        if chosen is None:
            if not self.is_sqlite and c.execute(_NEXT_CANDIDATE, where).first() is not None:
                raise _Taken  # every item with room is being written right now: look again
            return None, progress
        # counted again with the reservation (the choice was counted before the lock)
        if c.execute(_NEW_ASSIGNMENT_IF_ROOM, where | {"item": chosen[0], "t": t}).first() is None:
            raise _Taken
        return self._view(c, chosen[0]), progress

    def _candidates(self, s: Session, annotator_id: int, t: datetime) -> list[handout.Candidate]:
        """Every candidate of this annotator, by item id (the hot paths ask the database for one)."""
        where = {"me": annotator_id, "cutoff": t - timedelta(seconds=self.lease_seconds)}
        return [handout.Candidate(*row) for row in s.execute(_CANDIDATES.order_by(Item.id), where)]

    def _lock_item(self, s: Session | Connection, item_id: int) -> None:
        """PostgreSQL: lock the item's row until commit; every change to its counts takes it.
        SQLite needs nothing: its writers run one at a time (BEGIN IMMEDIATE)."""
        if not self.is_sqlite:
            s.execute(_LOCK_ITEM, {"item": item_id})

    # -- rankings -------------------------------------------------------------------------
    @_reconnecting
    def submit(self, annotator: str, item_id: int, ranks: list[int], all_bad: bool = False, comment: str = "") -> int:
        """Store one ranking (ranks in stored response order) in one transaction; returns its id.

        Three statements: the checks (under the item's lock on PostgreSQL, as in next_item: its
        count of rankings + reservations must not change between check and insert), the ranking
        (a trigger adds it to the item's n_active), the assignment closed."""
        try:
            with self._transaction() as c:
                me = self._annotator_id(c, annotator)
                item = self._view(c, item_id)
                ranks = handout.validate_ranks(
                    ranks, len(item.responses), where=f"ranking of item {item.external_id!r}"
                )
                check = _SUBMIT_CHECK if self.is_sqlite else _SUBMIT_CHECK_LOCKED
                active, mine, undone, open_id, open_item, opened_at = c.execute(
                    check, {"item": item_id, "me": me}
                ).one()
                if mine:
                    raise AlreadyRanked(
                        f"{annotator} already ranked item {item.external_id!r}; undo it first to change it"
                    )
                if active >= self.quota:
                    raise QuotaFull(
                        f"item {item.external_id!r} already has its {self.quota} rankings; fetch the next item"
                    )
                if open_id is None or open_item != item_id:
                    raise AlignInputError(
                        f"item {item.external_id!r} is not assigned to {annotator}; fetch your next item first"
                    )
                t = now()
                ranking_id = c.execute(
                    _NEW_RANKING,
                    {
                        "item_id": item_id,
                        "annotator_id": me,
                        "ranks": ranks,
                        "all_bad": bool(all_bad),
                        "comment": comment or "",
                        "seconds_spent": (t - opened_at).total_seconds(),
                        "created_at": t,
                    },
                ).scalar_one()
                c.execute(_CLOSE_ASSIGNMENT, {"assignment": open_id, "status": "done", "t": t})
                if undone:  # this annotator's undone ranking of the item points to its replacement
                    c.execute(_LINK_SUPERSEDED, {"item": item_id, "me": me, "ranking": ranking_id})
                return ranking_id
        except IntegrityError:  # a concurrent double submit by the same annotator lost the race
            raise AlreadyRanked(f"{annotator} already ranked item {item_id}") from None

    @_reconnecting
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

    @_reconnecting
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
    @_reconnecting
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

    @_reconnecting
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

    @_reconnecting
    def item_view(self, item_id: int) -> ItemView:
        with self._read() as s:
            return self._view(s, item_id)

    @_reconnecting
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
    def _annotator_id(self, s: Session | Connection, name: str) -> int:
        """The annotator's id; remembered, as ids never change and nobody is ever deleted."""
        if name not in self._annotator_ids:
            found = s.scalar(select(Annotator.id).where(Annotator.name == name))
            if found is None:
                raise AlignInputError(f"unknown annotator {name!r}; add them with `align annotate add-user`")
            self._annotator_ids[name] = found
        return self._annotator_ids[name]

    def _view(self, c: Session | Connection, item_id: int) -> ItemView:
        """An item as shown; remembered, as items and their responses are never changed once stored."""
        view = self._views.get(item_id)
        if view is None:
            found = c.execute(_ITEM_TEXT, {"item": item_id}).first()
            if found is None:
                raise AlignInputError(f"no item with id {item_id}")
            responses = list(c.execute(_ITEM_RESPONSES, {"item": item_id}).scalars())
            view = ItemView(item_id, found.external_id, found.prompt, responses)
            if len(self._views) < VIEW_CACHE_SIZE:
                self._views[item_id] = view
        return view


_DUMMY_HASH = hash_password("timing-equaliser")


# items.n_active follows the active rankings by the database's own hand, whoever writes them:
# +1 for a new active ranking, -1 when one is superseded (and +1 should one be restored)
_COUNTING_TRIGGERS = {
    "sqlite": [
        """CREATE TRIGGER IF NOT EXISTS rankings_count_insert AFTER INSERT ON rankings
        WHEN NEW.superseded_at IS NULL
        BEGIN UPDATE items SET n_active = n_active + 1 WHERE id = NEW.item_id; END""",
        """CREATE TRIGGER IF NOT EXISTS rankings_count_update AFTER UPDATE OF superseded_at ON rankings
        WHEN (OLD.superseded_at IS NULL) != (NEW.superseded_at IS NULL)
        BEGIN UPDATE items SET n_active = n_active + (CASE WHEN NEW.superseded_at IS NULL THEN 1 ELSE -1 END)
        WHERE id = NEW.item_id; END""",
    ],
    "postgresql": [
        """CREATE OR REPLACE FUNCTION align_count_active_rankings() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'INSERT' THEN
            IF NEW.superseded_at IS NULL THEN UPDATE items SET n_active = n_active + 1 WHERE id = NEW.item_id; END IF;
          ELSIF (OLD.superseded_at IS NULL) <> (NEW.superseded_at IS NULL) THEN
            UPDATE items SET n_active = n_active + (CASE WHEN NEW.superseded_at IS NULL THEN 1 ELSE -1 END)
            WHERE id = NEW.item_id;
          END IF;
          RETURN NULL;
        END $$""",
        """CREATE TRIGGER rankings_count_active AFTER INSERT OR UPDATE OF superseded_at ON rankings
        FOR EACH ROW EXECUTE FUNCTION align_count_active_rankings()""",
    ],
}


for _dialect, _statements in _COUNTING_TRIGGERS.items():  # part of the schema: made with the table
    for _statement in _statements:
        event.listen(RankingRow.__table__, "after_create", DDL(_statement).execute_if(dialect=_dialect))


def _has_counting_triggers(c: Connection) -> bool:
    if c.dialect.name == "sqlite":
        found = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'rankings_count_%'"
        return c.execute(text(found)).scalar_one() == 2
    found = "SELECT count(*) FROM pg_trigger WHERE tgname = 'rankings_count_active' AND tgrelid = 'rankings'::regclass"
    return c.execute(text(found)).scalar_one() == 1


# Every item's n_active from its rankings (a database upgraded to the counter, a restored backup).
RECOUNT_ACTIVE = "UPDATE items SET n_active = (SELECT count(*) FROM rankings r WHERE r.item_id = items.id AND r.superseded_at IS NULL)"
ASSIGNMENT_STATES = ("open", "done", "skipped", "released")

# Columns added to existing tables after their first release: (table, column). create_all makes
# them only in new tables; _add_columns adds them to a database (or a backup) made before.
_ADDED_COLUMNS = (("annotators", "disabled_at"),)


def _columns(engine, table: str) -> set[str]:
    with engine.connect() as c:
        return {col["name"] for col in inspect(c).get_columns(table)}


def _add_columns(engine) -> None:
    """Add every column of _ADDED_COLUMNS a table lacks (nullable, so old rows stay valid)."""
    for table, column in _ADDED_COLUMNS:
        if column in _columns(engine, table):
            continue
        kind = Base.metadata.tables[table].c[column].type.compile(dialect=engine.dialect)
        try:
            with engine.begin() as c:
                exists = " IF NOT EXISTS" if c.dialect.name == "postgresql" else ""
                c.execute(text(f"ALTER TABLE {table} ADD COLUMN{exists} {column} {kind}"))
        except OperationalError:  # SQLite: another process added it meanwhile
            if column not in _columns(engine, table):
                raise


def upgrade_schema(engine) -> None:
    """A database made by an older version gets what create_all adds only to new tables: the
    columns of _ADDED_COLUMNS, the items' n_active column (computed from its rankings in the same
    transaction that adds the counting triggers, so no ranking is missed), the triggers and the
    open-assignment index. Idempotent and cheap when all is there; of two processes upgrading at
    once, the second finds the work done."""
    _add_columns(engine)
    with engine.connect() as c:
        if _has_counting_triggers(c):
            return
    try:
        with engine.begin() as c:
            if c.dialect.name == "postgresql":  # one upgrader at a time; the other waits, then finds it done
                c.execute(text("LOCK TABLE rankings IN SHARE ROW EXCLUSIVE MODE"))
            if _has_counting_triggers(c):
                return
            if "n_active" not in {col["name"] for col in inspect(c).get_columns("items")}:
                c.execute(text("ALTER TABLE items ADD COLUMN n_active INTEGER NOT NULL DEFAULT 0"))
            for statement in _COUNTING_TRIGGERS[c.dialect.name]:
                c.execute(text(statement))
            c.execute(text(RECOUNT_ACTIVE))
    except OperationalError:  # SQLite: another process upgraded it meanwhile
        with engine.connect() as c:
            if not _has_counting_triggers(c):
                raise
    for index in Assignment.__table__.indexes:
        index.create(engine, checkfirst=True)


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
