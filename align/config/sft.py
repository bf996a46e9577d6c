"""`align sft` config: instruction fine-tuning.

The shared sections (model, data, update, training, deepspeed, output) are documented in
common.py; only what is particular to SFT is defined here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from align.config.common import INPUT_PATH, DataConfig, Section, TrainStageConfig
from align.data.conversation import RecordFormat


class SFTDataConfig(DataConfig):
    format: RecordFormat = Field(
        "auto", description="messages, alpaca, prompt_completion or text; 'auto' detects it from the columns."
    )


class SFTEvalConfig(Section):
    data: str | None = Field(
        None,
        description="Held-out instruction set for generation metrics; default data.test, else data.validation.",
        json_schema_extra=INPUT_PATH,
    )
    reference_column: str | None = Field(
        None,
        description="Column holding the reference answer (e.g. 'reference'); default: the record's response.",
    )
    max_new_tokens: int = Field(32, ge=1, description="Generation length for the held-out instruction set.")
    max_examples: int | None = Field(200, gt=0, description="Held-out examples to generate for (None: all).")
    batch_size: int = Field(16, ge=1, description="Prompts per generation / loss batch during evaluation.")
    retention_text: str | None = Field(
        None,
        description="Plain-text file (one passage a line) for the forgetting check: perplexity before/after.",
        json_schema_extra=INPUT_PATH,
    )
    max_retention_lines: int | None = Field(200, gt=0, description="Use at most this many retention lines.")
    compare_base: bool = Field(True, description="Also evaluate the base model, side by side.")
    samples_in_report: int = Field(8, ge=0, description="Rows of the prompt / reference / base / tuned sample table.")
    enabled: bool = Field(True, description="Run the final evaluation (eval.json, report.md) after training.")


class SFTConfig(TrainStageConfig):
    """`align sft`: instruction fine-tuning."""

    data: SFTDataConfig
    packing: bool = Field(False, description="Pack several short examples into one sequence (faster, same loss).")
    group_by_length: bool = Field(
        True,
        description="Cut batches from examples of similar length (sorted within shuffled windows of 8 batches; the "
        "batches in random order), so little of each batch is padding. Off: plain random batches.",
    )
    completion_only: bool = Field(True, description="Loss on response tokens only (prompt tokens are masked).")
    too_long: Literal["truncate", "drop", "error"] = Field(
        "truncate",
        description="Examples longer than data.max_length: cut the end off, drop them, or stop with an error. "
        "Counts are printed and saved either way; an example left without response tokens is dropped.",
    )
    system_prompt: str | None = Field(None, description="System message put before every prompt (none by default).")
    merge_lora: bool = Field(False, description="After LoRA training also write a merged full model to final-merged/.")
    eval: SFTEvalConfig = Field(default_factory=SFTEvalConfig)
