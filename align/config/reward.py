"""`align reward` config: reward model training."""

from __future__ import annotations


from pydantic import Field

from align.config.common import TrainStageConfig


class RewardConfig(TrainStageConfig):
    """`align reward`: a Bradley-Terry reward model from rankings or pairs."""

    aggregate_annotators: bool = Field(False, description="Merge several annotators' rankings of an item before making pairs.")
    margin_from_rank_gap: bool = Field(False, description="Use the rank gap as the Bradley-Terry margin.")
    center_rewards_coef: float | None = Field(None, ge=0, description="Penalty pulling mean reward to 0 (reward centering).")
