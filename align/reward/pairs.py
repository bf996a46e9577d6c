"""Rankings -> preference pairs, annotator aggregation, and a split by prompt (pure functions).

A ranking of k responses (rank 1 = best, equal ranks = ties) yields every pair of responses
with different ranks, k*(k-1)/2 at most (InstructGPT, Ouyang et al. 2022); ties yield none.
The rank gap is kept with each pair: it is the optional Bradley-Terry margin and the x-axis
of "accuracy by rank gap".
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from align.reward.text import Prompt

T = TypeVar("T")


@dataclass
class Ranking:
    """One annotator's ranking of one item's responses (ranks may be fractional after aggregation)."""

    prompt: Prompt
    responses: list[str]
    ranks: list[float]
    annotator: str | None = None
    item_id: str | None = None
    n_annotators: int = 1
    task: str | None = None  # optional category column, for accuracy by task

    @property
    def group(self) -> str:
        return prompt_key(self.prompt)


@dataclass
class Pair:
    prompt: Prompt
    chosen: str
    rejected: str
    margin: float = 0.0
    gap: float | None = None  # rank gap (None for pairs read as pairs)
    task: str | None = None
    annotator: str | None = None  # whose ranking it came from (None: read as a pair, or aggregated)

    @property
    def group(self) -> str:
        return prompt_key(self.prompt)


@dataclass
class PairStats:
    """What became of the input: every dropped thing is counted, so a report can say why."""

    records: int = 0
    duplicate_records: int = 0
    all_tied: int = 0  # rankings whose responses all share one rank: no pair
    chosen_equals_rejected: int = 0  # same text on both sides (duplicate responses, bad pairs)
    pairs: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "notes"}


def prompt_key(prompt: Prompt) -> str:
    """A hashable, order-preserving key for a prompt string or chat message list."""
    return prompt if isinstance(prompt, str) else json.dumps(list(prompt), sort_keys=True)


def ranking_pairs(ranking: Ranking, margin_from_gap: bool = False) -> list[Pair]:
    """Every pair of different rank, better one first; ties and same-text pairs give nothing."""
    pairs = []
    items = list(zip(ranking.responses, ranking.ranks))
    for i, (text_a, rank_a) in enumerate(items):
        for text_b, rank_b in items[i + 1 :]:
            if rank_a == rank_b:
                continue
            (chosen, c_rank), (rejected, r_rank) = sorted([(text_a, rank_a), (text_b, rank_b)], key=lambda x: x[1])
            gap = float(r_rank - c_rank)
            pairs.append(
                Pair(
                    ranking.prompt,
                    chosen,
                    rejected,
                    margin=gap if margin_from_gap else 0.0,
                    gap=gap,
                    task=ranking.task,
                    annotator=ranking.annotator,
                )
            )
    return pairs


def item_key(ranking: Ranking) -> tuple:
    """Which rankings are of the same item: its item_id, else its prompt and set of responses."""
    if ranking.item_id is not None:
        return ("id", str(ranking.item_id))
    return ("text", ranking.group, tuple(sorted(set(ranking.responses))))


def aggregate_rankings(rankings: Sequence[Ranking]) -> list[Ranking]:
    """Merge the rankings of each item into one: each response's rank is its mean rank.

    A response's mean is over the annotators who ranked it; equal means are ties. The merged
    ranking records how many annotators it came from.
    """
    groups: dict[tuple, list[Ranking]] = defaultdict(list)
    for ranking in rankings:
        groups[item_key(ranking)].append(ranking)
    merged = []
    for members in groups.values():
        ranks: dict[str, list[float]] = defaultdict(list)
        for ranking in members:
            for text, rank in zip(ranking.responses, ranking.ranks):
                ranks[text].append(float(rank))
        texts = list(ranks)
        merged.append(
            Ranking(
                prompt=members[0].prompt,
                responses=texts,
                ranks=[sum(ranks[t]) / len(ranks[t]) for t in texts],
                annotator="mean",
                item_id=members[0].item_id,
                n_annotators=len(members),
                task=members[0].task,
            )
        )
    return merged


def drop_duplicates(records: Sequence[T], key: Callable[[T], Hashable]) -> tuple[list[T], int]:
    """First occurrence of each key, in order, and how many were dropped (e.g. an export imported twice)."""
    seen: set = set()
    kept = []
    for record in records:
        k = key(record)
        if k not in seen:
            seen.add(k)
            kept.append(record)
    return kept, len(records) - len(kept)


def ranking_record_key(ranking: Ranking) -> tuple:
    return (ranking.annotator, item_key(ranking), tuple(zip(ranking.responses, ranking.ranks)))


def pair_record_key(pair: Pair) -> tuple:
    return (pair.group, pair.chosen, pair.rejected, pair.margin)


def training_rankings(rankings: Sequence[Ranking], aggregate: bool = False) -> tuple[list[Ranking], int, int]:
    """The rankings a reward model learns from: duplicates dropped, annotators optionally merged,
    all-tied rankings (no signal) left out. Returns them, the duplicates and the all-tied count."""
    kept, duplicates = drop_duplicates(rankings, ranking_record_key)
    if aggregate:
        kept = aggregate_rankings(kept)
    informative = [r for r in kept if len(set(r.ranks)) > 1]
    return informative, duplicates, len(kept) - len(informative)


def rankings_to_pairs(
    rankings: Sequence[Ranking], aggregate: bool = False, margin_from_gap: bool = False
) -> tuple[list[Pair], PairStats]:
    """Deduplicate, optionally aggregate annotators, and expand every ranking into pairs."""
    stats = PairStats(records=len(rankings))
    rankings, stats.duplicate_records, stats.all_tied = training_rankings(rankings, aggregate)
    pairs: list[Pair] = []
    for ranking in rankings:
        for pair in ranking_pairs(ranking, margin_from_gap):
            if pair.chosen == pair.rejected:
                stats.chosen_equals_rejected += 1
            else:
                pairs.append(pair)
    stats.pairs = len(pairs)
    return pairs, stats


def clean_pairs(pairs: Sequence[Pair]) -> tuple[list[Pair], PairStats]:
    """For data read as pairs: drop exact duplicates and pairs whose chosen == rejected."""
    stats = PairStats(records=len(pairs))
    kept, stats.duplicate_records = drop_duplicates(pairs, pair_record_key)
    good = [p for p in kept if p.chosen != p.rejected]
    stats.chosen_equals_rejected = len(kept) - len(good)
    stats.pairs = len(good)
    return good, stats


def split_by_group(
    items: Sequence[T], group: Callable[[T], str], fractions: dict[str, float], seed: int
) -> dict[str, list[T]]:
    """Split items so that all items of one group (prompt) land in the same split.

    Groups are shuffled with `seed` and cut by cumulative fractions of the number of groups;
    the first split takes what is left, so fractions of the others may sum below 1.
    """
    names = list(fractions)
    keys = sorted({group(item) for item in items})
    random.Random(seed).shuffle(keys)
    assignment: dict[str, str] = {}
    start = 0
    for name in names[1:]:
        count = round(fractions[name] * len(keys))
        if fractions[name] > 0 and count == 0 and len(keys) - start > 1:
            count = 1  # a requested split is never silently empty
        for key in keys[start : start + count]:
            assignment[key] = name
        start += count
    for key in keys[start:]:
        assignment[key] = names[0]
    splits: dict[str, list[T]] = {name: [] for name in names}
    for item in items:
        splits[assignment[group(item)]].append(item)
    return splits
