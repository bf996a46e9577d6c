"""Who ranks what next, and how a shown order maps back to the stored one. No SQL here.

The store asks this module three questions:
- which of the open candidate items should this annotator get next (`pick_next`);
- is a reservation (an open assignment) still holding its slot (`lease_alive`);
- in which order are an item's responses shown to an annotator (`display_order`).

Policy: finish items before starting new ones (most rankings + reservations first, then
the oldest item), so a half-staffed team still produces complete items; a reservation
that nobody touched for `ttl` seconds stops counting against the quota.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from align.errors import AlignInputError


@dataclass(frozen=True)
class Candidate:
    """An item this annotator may rank: `filled` active rankings, `reserved` live leases of others."""

    item_id: int
    filled: int
    reserved: int


def has_room(candidate: Candidate, quota: int) -> bool:
    return candidate.filled + candidate.reserved < quota


def pick_next(candidates: list[Candidate], quota: int) -> Candidate | None:
    """The item with room that is closest to complete; ties go to the oldest (lowest id)."""
    open_ = [c for c in candidates if has_room(c, quota)]
    if not open_:
        return None
    return min(open_, key=lambda c: (-(c.filled + c.reserved), c.item_id))


def may_resume(candidate: Candidate | None, lease_is_alive: bool, quota: int) -> bool:
    """Give an annotator back their open item? A live lease still holds its slot (only finished
    rankings can have filled the item); a lapsed one is kept only if a slot is still free."""
    if candidate is None:  # ranked or skipped meanwhile
        return False
    return candidate.filled < quota if lease_is_alive else has_room(candidate, quota)


def lease_alive(touched_at: datetime, now: datetime, ttl_seconds: float) -> bool:
    """An open assignment reserves its slot until nobody touched it for ttl seconds."""
    return now - touched_at < timedelta(seconds=ttl_seconds)


def display_order(item_id: int, annotator: str, k: int) -> list[int]:
    """Shown position -> stored response index; fixed per (item, annotator), differs between annotators.

    Derived from a hash rather than stored, so the server recomputes it on every request and
    never has to trust an order sent back by the browser.
    """
    seed = int.from_bytes(hashlib.sha256(f"{item_id}:{annotator}".encode()).digest()[:8], "big")
    order = list(range(k))
    random.Random(seed).shuffle(order)
    return order


def to_stored(display_ranks: list[int], order: list[int]) -> list[int]:
    """Ranks given in shown order -> ranks in stored order."""
    stored = [0] * len(order)
    for shown, index in enumerate(order):
        stored[index] = display_ranks[shown]
    return stored


def to_display(stored_ranks: list[int], order: list[int]) -> list[int]:
    return [stored_ranks[index] for index in order]


def validate_ranks(ranks: object, k: int, where: str = "ranks") -> list[int]:
    """A rank per response, each an integer 1..k (1 = best, equal = tie); else one clear error."""
    if not isinstance(ranks, (list, tuple)):
        raise AlignInputError(f"{where}: expected a list of {k} integer ranks, got {type(ranks).__name__}")
    if len(ranks) != k:
        raise AlignInputError(f"{where}: {len(ranks)} ranks for {k} responses; give exactly one rank per response")
    out = []
    for position, rank in enumerate(ranks):
        whole = isinstance(rank, int) or (isinstance(rank, float) and rank.is_integer())  # NaN, inf: not whole
        if isinstance(rank, bool) or not whole:
            raise AlignInputError(f"{where}: rank {position + 1} is {rank!r}; ranks must be whole numbers")
        if not 1 <= rank <= k:
            raise AlignInputError(f"{where}: rank {position + 1} is {rank}; ranks go from 1 (best) to {k}")
        out.append(int(rank))
    return out
