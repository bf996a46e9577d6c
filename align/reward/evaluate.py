"""How good is a reward model? Figures computed from its scores on held-out pairs and rankings.

- pairwise accuracy: share of pairs where r(chosen) > r(rejected);
- accuracy by rank gap: far-apart responses should be easier than neighbours;
- calibration: Bradley-Terry P(a preferred over b) = sigmoid(r_a - r_b), binned, against
  how often a was in fact preferred. Each pair counts in both orientations (p with label 1,
  1 - p with label 0), otherwise the "observed" rate would be 1 by construction;
- Kendall's tau (tau-b, ties allowed) between the model's order and each held-out item's
  human ranking (mean rank over its annotators);
- with a gold rule (demo world): how often the annotators agree with gold, and the model.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch

from align.reward.loss import pairwise_accuracy, preference_probability
from align.reward.pairs import Pair, Ranking, aggregate_rankings

ScoreFn = Callable[[Sequence[Any], Sequence[str]], torch.Tensor]


def score_pairs(score: ScoreFn, pairs: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of chosen and rejected, each (N,); every distinct text is scored once."""
    index: dict[tuple[str, str], int] = {}
    prompts, responses = [], []
    for pair in pairs:
        for response in (pair.chosen, pair.rejected):
            key = (pair.group, response)
            if key not in index:
                index[key] = len(prompts)
                prompts.append(pair.prompt)
                responses.append(response)
    rewards = score(prompts, responses) if prompts else torch.empty(0)
    chosen = torch.tensor([rewards[index[(p.group, p.chosen)]].item() for p in pairs])
    rejected = torch.tensor([rewards[index[(p.group, p.rejected)]].item() for p in pairs])
    return chosen, rejected


def gap_label(gap: float | None) -> str:
    if gap is None:
        return "n/a"
    return (
        str(int(gap)) if float(gap).is_integer() else f"{math.ceil(gap * 2) / 2:g}"
    )  # fractional (mean) ranks: half-steps


def accuracy_by_gap(
    chosen: torch.Tensor, rejected: torch.Tensor, gaps: Sequence[float | None]
) -> dict[str, dict[str, float]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, gap in enumerate(gaps):
        groups[gap_label(gap)].append(i)
    return {
        label: {"accuracy": pairwise_accuracy(chosen[idx], rejected[idx]), "pairs": len(idx)}
        for label, idx in sorted(groups.items(), key=lambda kv: (kv[0] == "n/a", float(kv[0]) if kv[0] != "n/a" else 0))
    }


def accuracy_by_task(
    chosen: torch.Tensor, rejected: torch.Tensor, tasks: Sequence[str | None]
) -> dict[str, dict[str, float]]:
    """Accuracy per value of the data's optional "task" column (empty when there is none)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, task in enumerate(tasks):
        if task is not None:
            groups[task].append(i)
    return {
        t: {"accuracy": pairwise_accuracy(chosen[idx], rejected[idx]), "pairs": len(idx)}
        for t, idx in sorted(groups.items())
    }


def calibration(chosen: torch.Tensor, rejected: torch.Tensor, bins: int = 10) -> dict[str, Any]:
    """Binned predicted P(preferred) vs observed frequency, and the expected calibration error."""
    p = preference_probability(chosen, rejected)
    probs = torch.cat([p, 1 - p])
    labels = torch.cat([torch.ones_like(p), torch.zeros_like(p)])
    rows, ece = [], 0.0
    edges = torch.linspace(0, 1, bins + 1)
    for b in range(bins):
        upper_ok = probs <= edges[b + 1] if b == bins - 1 else probs < edges[b + 1]
        mask = (probs >= edges[b]) & upper_ok
        n = int(mask.sum())
        if n == 0:
            continue
        predicted, observed = probs[mask].mean().item(), labels[mask].mean().item()
        rows.append(
            {"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "predicted": predicted, "observed": observed, "count": n}
        )
        ece += n / probs.numel() * abs(predicted - observed)
    return {"bins": rows, "ece": ece if probs.numel() else float("nan")}


def kendall_tau(score: ScoreFn, rankings: Sequence[Ranking]) -> dict[str, float]:
    """Mean tau-b between model scores and each item's (annotator-mean) ranking."""
    from scipy.stats import kendalltau

    items = [r for r in aggregate_rankings(rankings) if len(set(r.ranks)) > 1]
    if not items:
        return {"kendall_tau": float("nan"), "tau_items": 0}
    prompts = [r.prompt for r in items for _ in r.responses]
    responses = [text for r in items for text in r.responses]
    rewards = score(prompts, responses).tolist()
    taus, start = [], 0
    for ranking in items:
        scores = rewards[start : start + len(ranking.responses)]
        start += len(ranking.responses)
        tau = kendalltau(scores, [-r for r in ranking.ranks]).statistic  # rank 1 = best = highest score
        if not math.isnan(tau):
            taus.append(tau)
    return {"kendall_tau": sum(taus) / len(taus) if taus else float("nan"), "tau_items": len(taus)}


def gold_agreement(
    gold_score: Callable[[Any, str], float], pairs: Sequence[Pair], chosen: torch.Tensor, rejected: torch.Tensor
) -> dict[str, float]:
    """Annotators' and the model's agreement with the gold rule, on pairs where gold is not tied."""
    cache: dict[tuple[str, str], float] = {}

    def g(pair: Pair, text: str) -> float:
        key = (pair.group, text)
        if key not in cache:
            cache[key] = gold_score(pair.prompt, text)
        return cache[key]

    annot, model, n = 0, 0, 0
    for i, pair in enumerate(pairs):
        gc, gr = g(pair, pair.chosen), g(pair, pair.rejected)
        if gc == gr:
            continue
        n += 1
        annot += gc > gr
        model += (chosen[i] > rejected[i]).item() == (gc > gr)
    if n == 0:
        return {"gold_pairs": 0}
    return {"annotator_gold_agreement": annot / n, "model_gold_accuracy": model / n, "gold_pairs": n}


def evaluate_split(
    score: ScoreFn,
    pairs: Sequence[Pair],
    rankings: Sequence[Ranking] = (),
    bins: int = 10,
    gold_score: Callable[[Any, str], float] | None = None,
) -> tuple[dict[str, Any], tuple[torch.Tensor, torch.Tensor]]:
    """All figures for one split, and the raw (chosen, rejected) rewards for the plots."""
    chosen, rejected = score_pairs(score, pairs)
    figures: dict[str, Any] = {
        "pairs": len(pairs),
        "accuracy": pairwise_accuracy(chosen, rejected),
        "mean_margin": (chosen - rejected).mean().item() if len(pairs) else float("nan"),
        "accuracy_by_gap": accuracy_by_gap(chosen, rejected, [p.gap for p in pairs]),
        "accuracy_by_task": accuracy_by_task(chosen, rejected, [p.task for p in pairs]),
        "calibration": calibration(chosen, rejected, bins),
    }
    if rankings:
        figures.update(kendall_tau(score, rankings))
    if gold_score is not None:
        figures.update(gold_agreement(gold_score, pairs, chosen, rejected))
    return figures, (chosen, rejected)
