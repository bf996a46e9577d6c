"""Reward scoring by text (the reward model may use a different tokenizer than the policy),
through the reward stage's `RewardScorer`, with the checks PPO needs before trusting a score.
"""

from __future__ import annotations

import torch

from align.errors import AlignInputError, TrainingDiverged


def load_scorer(reward_model: str):
    """RewardScorer for an `align reward` run dir or its final/ (anything else: AlignInputError)."""
    from align.reward.scorer import RewardScorer

    return RewardScorer(reward_model)


def score_texts(scorer, prompts: list[str], responses: list[str]) -> torch.Tensor:
    """(B,) float scores; a NaN/inf score stops the run (TrainingDiverged) instead of poisoning the policy."""
    scores = torch.as_tensor(scorer.score(prompts, responses), dtype=torch.float32).flatten().cpu()
    if scores.numel() != len(prompts):
        raise AlignInputError(f"the reward model returned {scores.numel()} scores for {len(prompts)} responses")
    bad = ~torch.isfinite(scores)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise TrainingDiverged(
            f"the reward model returned {int(bad.sum())} non-finite score(s) (NaN/inf) of {len(prompts)}, e.g. for prompt "
            f"{prompts[i][:80]!r} / response {responses[i][:80]!r}; check the reward run (its training loss and eval.json) "
            "before using it for PPO"
        )
    return scores
