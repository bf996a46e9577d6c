"""Reward modelling: rankings -> pairs, Bradley-Terry loss, a one-scalar head, scoring, evaluation.

`RewardScorer` (scorer.py) is the API later stages use; the rest serves `stages/reward.py`.
"""

from align.reward.scorer import RewardScorer

__all__ = ["RewardScorer"]
