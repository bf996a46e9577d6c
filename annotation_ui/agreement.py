"""Inter-annotator agreement and aggregation of rankings. Pure functions, no I/O.

A ranking is a list of ranks, one per response, 1 = best, equal ranks = tie.

- pairwise agreement: over the response pairs (i, j) of items two annotators share, the share
  on which they give the same relation (i better, tie, j better);
- Kendall's tau-b (ties-corrected, scipy) per shared item, averaged;
- Krippendorff's alpha, ordinal metric, over all (item, response) units
  (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability", coincidence matrix form);
- reliability of each annotator: agreement with the leave-one-out consensus of the others;
- aggregation: mean rank, or Bradley-Terry strengths (Hunter 2004 MM updates) where a tie
  counts half a win each way.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import Iterable, Sequence

from scipy.stats import kendalltau


def dense_ranks(scores: Sequence[float], higher_is_better: bool = True) -> list[int]:
    """Scores -> ranks 1, 2, ... with equal scores sharing a rank (1, 1, 2)."""
    levels = sorted(set(scores), reverse=higher_is_better)
    return [levels.index(s) + 1 for s in scores]


def relation(ranks: Sequence[int], i: int, j: int) -> int:
    """+1 if response i is ranked better than j, -1 if worse, 0 for a tie."""
    return (ranks[i] < ranks[j]) - (ranks[i] > ranks[j])


def pair_agreement(a: Sequence[int], b: Sequence[int]) -> tuple[int, int]:
    """(agreeing pairs, pairs) between two rankings of the same responses."""
    pairs = list(itertools.combinations(range(len(a)), 2))
    return sum(relation(a, i, j) == relation(b, i, j) for i, j in pairs), len(pairs)


def kendall_tau_b(a: Sequence[int], b: Sequence[int]) -> float:
    """Kendall's tau-b; nan when a ranking is all ties (no ordering to correlate)."""
    if len(set(a)) < 2 or len(set(b)) < 2:
        return math.nan
    return float(kendalltau(a, b, variant="b").statistic)


def krippendorff_alpha_ordinal(units: Iterable[Sequence[float]]) -> float:
    """Alpha over units, each the values the coders gave it (missing values left out).

    alpha = 1 - (n - 1) * sum_ck o_ck d2_ck / sum_ck n_c n_k d2_ck, with the ordinal
    distance d2_ck = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2. nan when nothing is pairable
    or there is no variation at all.
    """
    coincidence: dict[tuple[float, float], float] = defaultdict(float)
    for values in units:
        m = len(values)
        if m < 2:
            continue  # a unit seen by one coder carries no agreement information
        for x, y in itertools.permutations(values, 2):
            coincidence[(x, y)] += 1.0 / (m - 1)
    if not coincidence:
        return math.nan
    levels = sorted({c for c, _ in coincidence})
    n_c = {c: sum(v for (x, _), v in coincidence.items() if x == c) for c in levels}
    n = sum(n_c.values())
    position = {c: i for i, c in enumerate(levels)}

    def d2(c: float, k: float) -> float:
        lo, hi = sorted((position[c], position[k]))
        between = sum(n_c[levels[g]] for g in range(lo, hi + 1))
        return (between - (n_c[c] + n_c[k]) / 2.0) ** 2

    observed = sum(v * d2(c, k) for (c, k), v in coincidence.items())
    expected = sum(n_c[c] * n_c[k] * d2(c, k) for c in levels for k in levels)
    if expected == 0:
        return math.nan
    return 1.0 - (n - 1) * observed / expected


def agreement_report(by_item: dict[object, dict[str, Sequence[int]]]) -> dict:
    """Agreement figures from {item: {annotator: ranks}}: per annotator pair and overall."""
    pairs: dict[tuple[str, str], dict] = {}
    agree_total = [0, 0]
    taus: list[float] = []
    for rankings in by_item.values():
        for a, b in itertools.combinations(sorted(rankings), 2):
            entry = pairs.setdefault((a, b), {"shared_items": 0, "agree": 0, "pairs": 0, "taus": []})
            agree, total = pair_agreement(rankings[a], rankings[b])
            tau = kendall_tau_b(rankings[a], rankings[b])
            entry["shared_items"] += 1
            entry["agree"] += agree
            entry["pairs"] += total
            agree_total[0] += agree
            agree_total[1] += total
            if not math.isnan(tau):
                entry["taus"].append(tau)
                taus.append(tau)
    per_pair = [
        {
            "annotators": [a, b],
            "shared_items": e["shared_items"],
            "pairwise_agreement": e["agree"] / e["pairs"] if e["pairs"] else math.nan,
            "kendall_tau_b": _mean(e["taus"]),
        }
        for (a, b), e in sorted(pairs.items())
    ]
    units = [
        [ranks[i] for ranks in rankings.values()]
        for rankings in by_item.values()
        if len(rankings) >= 2
        for i in range(len(next(iter(rankings.values()))))
    ]
    return {
        "pairwise_agreement": agree_total[0] / agree_total[1] if agree_total[1] else math.nan,
        "kendall_tau_b": _mean(taus),
        "krippendorff_alpha_ordinal": krippendorff_alpha_ordinal(units),
        "items_with_overlap": sum(len(r) >= 2 for r in by_item.values()),
        "per_pair": per_pair,
        "per_annotator": annotator_reliability(by_item),
    }


def annotator_reliability(by_item: dict[object, dict[str, Sequence[int]]]) -> dict[str, dict]:
    """How well each annotator agrees with everyone else, from the rankings alone.

    Leave-one-out consensus: on each item an annotator shares with others, the others' mean rank
    of each response is the consensus; the annotator's reliability is the share of the response
    pairs the consensus decides (unequal mean ranks) on which the annotator gives the same
    relation (their tie counts as a disagreement). An annotator who ranks at random agrees on
    about half of those pairs, one who agrees with everyone on all of them.
    Returns {annotator: {"items": shared items, "pairs": decided pairs, "reliability": share}}.
    """
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # items, agreeing pairs, pairs
    for rankings in by_item.values():
        if len(rankings) < 2:
            continue
        for name, ranks in rankings.items():
            consensus = mean_rank([r for other, r in rankings.items() if other != name])
            decided = [(i, j) for i, j in itertools.combinations(range(len(ranks)), 2) if consensus[i] != consensus[j]]
            entry = counts[name]
            entry[0] += 1
            entry[1] += sum(relation(ranks, i, j) == relation(consensus, i, j) for i, j in decided)
            entry[2] += len(decided)
    return {
        name: {"items": items, "pairs": pairs, "reliability": agree / pairs if pairs else math.nan}
        for name, (items, agree, pairs) in sorted(counts.items())
    }


def reliability_weights(reliability: dict[str, dict], chance: float = 0.5) -> dict[str, float]:
    """Example weights from reliabilities: 0 at chance agreement or below, 1 at full agreement,
    linear between (an annotator without shared items keeps weight 1: nothing to judge them by)."""
    weights = {}
    for name, figures in reliability.items():
        r = figures["reliability"]
        weights[name] = 1.0 if math.isnan(r) else min(1.0, max(0.0, (r - chance) / (1 - chance)))
    return weights


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


# -- aggregation ----------------------------------------------------------------------------
def mean_rank(rankings: Sequence[Sequence[int]]) -> list[float]:
    """Average rank of each response over annotators (lower is better)."""
    k = len(rankings[0])
    return [sum(r[i] for r in rankings) / len(rankings) for i in range(k)]


def bradley_terry(
    rankings: Sequence[Sequence[int]], prior: float = 0.1, iterations: int = 500, tol: float = 1e-10
) -> list[float]:
    """Log-strengths from every pair in every ranking (tie = half a win each way).

    `prior` adds that many pseudo-comparisons per pair, half won by each side, so a response
    that always wins still has a finite strength. MM update: p_i = W_i / sum_j n_ij / (p_i + p_j).
    """
    k = len(rankings[0])
    wins = [[prior / 2.0 if i != j else 0.0 for j in range(k)] for i in range(k)]
    for ranks in rankings:
        for i, j in itertools.combinations(range(k), 2):
            rel = relation(ranks, i, j)
            wins[i][j] += 1.0 if rel > 0 else 0.5 if rel == 0 else 0.0
            wins[j][i] += 1.0 if rel < 0 else 0.5 if rel == 0 else 0.0
    p = [1.0] * k
    for _ in range(iterations):
        new = []
        for i in range(k):
            denominator = sum((wins[i][j] + wins[j][i]) / (p[i] + p[j]) for j in range(k) if j != i)
            new.append(sum(wins[i]) / denominator if denominator else p[i])
        scale = math.exp(sum(math.log(x) for x in new) / k)
        new = [x / scale for x in new]
        done = max(abs(a - b) for a, b in zip(new, p)) < tol
        p = new
        if done:
            break
    return [math.log(x) for x in p]


def aggregate(rankings: Sequence[Sequence[int]], method: str = "mean_rank") -> list[int]:
    """Several annotators' rankings of one item -> one ranking (equal aggregate = tie)."""
    if not rankings:
        raise ValueError("aggregate() needs at least one ranking")
    if method == "mean_rank":
        return dense_ranks([round(x, 9) for x in mean_rank(rankings)], higher_is_better=False)
    if method == "bradley_terry":
        return dense_ranks([round(x, 6) for x in bradley_terry(rankings)], higher_is_better=True)
    raise ValueError(f"unknown aggregation method {method!r}; use 'mean_rank' or 'bradley_terry'")
