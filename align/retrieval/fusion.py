"""Reciprocal rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009).

    score(d) = sum over rankings r of  w_r / (k + rank_r(d)),   rank starting at 1

Only ranks are used, so BM25 scores and cosine similarities need no calibration against
each other; k = 60 is the paper's constant that damps the influence of the very top ranks.
"""

from __future__ import annotations

from typing import Hashable, Sequence


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Hashable]], k: float = 60.0, weights: Sequence[float] | None = None
) -> list[tuple[Hashable, float]]:
    """Fuse best-first rankings into one, best first; ties keep the order of first appearance."""
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    scores: dict[Hashable, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))
