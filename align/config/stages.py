"""The registry of stage configs: stage name -> config class (each defined in its own module)."""

from __future__ import annotations

from align.config.annotate import AnnotateConfig
from align.config.common import Section
from align.config.dpo import DPOConfig
from align.config.pipeline import DemoConfig, PipelineConfig
from align.config.ppo import PPOConfig
from align.config.rag import EvalConfig, RAGConfig
from align.config.reward import RewardConfig
from align.config.sft import SFTConfig, SFTEvalConfig

STAGE_CONFIGS: dict[str, type[Section]] = {
    "sft": SFTConfig,
    "reward": RewardConfig,
    "dpo": DPOConfig,
    "ppo": PPOConfig,
    "rag": RAGConfig,
    "eval": EvalConfig,
    "annotate": AnnotateConfig,
    "pipeline": PipelineConfig,
    "demo": DemoConfig,
}

__all__ = [
    "STAGE_CONFIGS",
    "AnnotateConfig",
    "DemoConfig",
    "EvalConfig",
    "PPOConfig",
    "PipelineConfig",
    "RAGConfig",
    "RewardConfig",
    "SFTConfig",
    "SFTEvalConfig",
]
