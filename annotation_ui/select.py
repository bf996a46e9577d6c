"""Which of the generated items people rank (`generate.select`): all of them; a `budget` at
random (the control); or the `budget` where the current reward model's ensemble disagrees most
(align.reward.uncertainty), each with the k of its responses the heads dispute most.

Selected items come back most uncertain first: the store hands out the oldest open item first
among equally filled ones, so the app's hand-out order follows the same score.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from align.errors import AlignInputError
from annotation_ui.store import NewItem


def check_budget(budget: int | None, pool: int, what: str = "prompts") -> None:
    """A budget must fit the pool it is drawn from (checked before any sampling)."""
    if budget is not None and budget > pool:
        raise AlignInputError(
            f"budget {budget} is larger than the pool of {pool} {what}; lower budget, or give more prompts "
            "(generate.prompts / max_prompts)"
        )


def check_ensemble(scorer) -> None:
    if scorer.heads < 2:
        raise AlignInputError(
            f"select: uncertainty asks the reward model's heads where they disagree, but {scorer.path} has one head; "
            "train it with `heads: 4` (align reward heads=4), or use select: random"
        )


def selection_scorer(generate, prompts: int, what: str = "prompts"):
    """What a selection needs, checked before any sampling: the budget fits the `prompts`, and
    select uncertainty's reward model loads and has 2+ heads (returned; None for all / random)."""
    check_budget(generate.budget, prompts, what)
    if generate.select != "uncertainty":
        return None
    from align.demo import resolve_if_demo_ref
    from align.reward.scorer import RewardScorer

    scorer = RewardScorer(resolve_if_demo_ref(generate.reward_model))
    check_ensemble(scorer)
    return scorer


def select_random(pool: Sequence[NewItem], budget: int, k: int, seed: int = 0) -> list[NewItem]:
    """`budget` items at random, each with k of its responses at random (kept in their order)."""
    rng = random.Random(f"select-{seed}")
    chosen = rng.sample(list(pool), min(budget, len(pool)))
    return [
        _keep(item, sorted(rng.sample(range(len(item.responses)), min(k, len(item.responses)))), None)
        for item in chosen
    ]


def select_uncertain(pool: Sequence[NewItem], budget: int, k: int, scorer) -> list[NewItem]:
    """The `budget` items whose chosen k responses the ensemble disagrees on most, most uncertain first."""
    from align.reward.uncertainty import item_uncertainty

    check_ensemble(scorer)
    prompts = [item.prompt for item in pool for _ in item.responses]
    responses = [response for item in pool for response in item.responses]
    rewards = scorer.score_heads(prompts, responses)  # (all responses, heads)
    scored, start = [], 0
    for item in pool:
        score, keep = item_uncertainty(rewards[start : start + len(item.responses)].T, k)
        scored.append((score, item, keep))
        start += len(item.responses)
    scored.sort(key=lambda entry: -entry[0])  # stable: equal scores keep the pool's order
    return [_keep(item, keep, score) for score, item, keep in scored[:budget]]


def select_items(pool: Sequence[NewItem], method: str, budget: int | None, k: int, scorer=None, seed: int = 0):
    """The items people will rank, by `method` (all / random / uncertainty)."""
    if method == "all":
        return list(pool)
    if method == "random":
        return select_random(pool, budget, k, seed)
    if scorer is None:
        raise AlignInputError("select: uncertainty needs a reward model to ask (reward_model: RUN_DIR)")
    return select_uncertain(pool, budget, k, scorer)


def _keep(item: NewItem, responses: list[int], score: float | None) -> NewItem:
    meta = {**(item.meta or {}), "selected_from": len(item.responses)}
    if score is not None:
        meta["uncertainty"] = round(score, 6)
    return replace(item, responses=[item.responses[i] for i in responses], meta=meta)
