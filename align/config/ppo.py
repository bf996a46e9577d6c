"""`align ppo` config: PPO against a reward model."""

from __future__ import annotations


from pydantic import Field

from align.config.common import DataConfig, ModelConfig, OutputConfig, Section


class PPOConfig(Section):
    """`align ppo`: PPO of the policy against a reward model with a KL penalty."""

    policy: ModelConfig
    reward_model: str = Field(description="An `align reward` run dir (or its final/).")
    data: DataConfig
    output: OutputConfig = Field(default_factory=OutputConfig)
    deepspeed: str | None = Field(None, description="DeepSpeed JSON for policy and critic.")
