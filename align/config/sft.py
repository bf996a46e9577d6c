"""`align sft` config: instruction fine-tuning."""

from __future__ import annotations


from pydantic import Field

from align.config.common import Section, TrainStageConfig


class SFTEvalConfig(Section):
    max_new_tokens: int = Field(32, ge=1, description="Generation length for the held-out instruction set.")
    max_examples: int | None = Field(200, gt=0, description="Held-out examples to generate for (None: all).")
    retention_text: str | None = Field(None, description="Plain-text file for the forgetting check (perplexity before/after).")
    compare_base: bool = Field(True, description="Also evaluate the base model, side by side.")


class SFTConfig(TrainStageConfig):
    """`align sft`: instruction fine-tuning."""

    packing: bool = Field(False, description="Pack several short examples into one sequence (faster, same loss).")
    completion_only: bool = Field(True, description="Loss on response tokens only.")
    merge_lora: bool = Field(False, description="After LoRA training also write a merged full model to final-merged/.")
    eval: SFTEvalConfig = Field(default_factory=SFTEvalConfig)
