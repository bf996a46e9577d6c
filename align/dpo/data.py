"""Preference data -> the rows TRL's DPOTrainer and KTOTrainer read (conversational form).

DPO: one row per pair {"prompt": [messages], "chosen": [assistant], "rejected": [assistant]};
the pairs come from align.reward (every pair of different rank, ties give none).

KTO learns from single responses labelled desirable or not. From a ranking of one item:
    best_vs_worst  responses at the item's best rank are desirable, at its worst rank
                   undesirable, the ones between unused
    median         better (lower) than the item's median rank desirable, worse undesirable,
                   at the median unused
An all-tied ranking gives nothing. From pairs data: chosen desirable, rejected undesirable.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

from align.errors import AlignInputError
from align.reward.inputs import SplitData
from align.reward.pairs import Pair, Ranking
from align.reward.text import Prompt, messages_for


def prompt_messages(prompt: Prompt) -> list[dict]:
    return messages_for(prompt, "")[:-1]


def dpo_rows(pairs: Sequence[Pair]) -> list[dict]:
    return [
        {
            "prompt": prompt_messages(p.prompt),
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
        }
        for p in pairs
    ]


def keep_by_weight(pairs: Sequence[Pair], weights: dict[str, float], seed: int) -> list[Pair]:
    """Each pair kept with probability = its annotator's weight (others 1): in expectation the
    loss over the kept pairs is the weighted loss, whatever loss TRL computes on them."""
    rng = random.Random(f"annotator-weights-{seed}")
    return [p for p in pairs if rng.random() < weights.get(p.annotator, 1.0)]


def kto_labels(ranking: Ranking, rule: str) -> list[tuple[str, bool]]:
    """(response, desirable) for the responses of one ranking that the rule labels."""
    ranks = ranking.ranks
    best, worst = min(ranks), max(ranks)
    if best == worst:
        return []
    if rule == "best_vs_worst":
        return [(r, k == best) for r, k in zip(ranking.responses, ranks) if k in (best, worst)]
    if rule == "median":
        middle = statistics.median(ranks)
        return [(r, k < middle) for r, k in zip(ranking.responses, ranks) if k != middle]
    raise ValueError(f"unknown KTO rule {rule!r}")


def kto_rows(split: SplitData, rule: str) -> list[dict]:
    """KTO rows from a split's rankings (or, for pairs data, its pairs)."""
    labelled: list[tuple[Prompt, str, bool]] = []
    if split.rankings:
        for ranking in split.rankings:
            labelled += [(ranking.prompt, text, good) for text, good in kto_labels(ranking, rule)]
    else:
        for pair in split.pairs:
            labelled += [(pair.prompt, pair.chosen, True), (pair.prompt, pair.rejected, False)]
    rows = [
        {"prompt": prompt_messages(p), "completion": [{"role": "assistant", "content": t}], "label": good}
        for p, t, good in labelled
    ]
    kinds = {row["label"] for row in rows}
    if len(kinds) < 2:
        which = "desirable" if True in kinds else "undesirable" if kinds else "no"
        raise AlignInputError(
            f"kto.rule = {rule} labels {len(rows)} examples of {split.source}, all {which}; KTO needs both desirable "
            "and undesirable examples: use kto.rule=median or best_vs_worst on rankings with different ranks, or loss=dpo"
        )
    return rows
