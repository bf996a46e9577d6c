"""`align dpo` config: learning from rankings without a reward model (DPO, IPO, ... and KTO).

The data section and the preference options (simulate, aggregate_annotators, eval.test_fraction,
eval.gold_world) mean exactly what they mean in `align reward`: the same code reads them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from align.config.common import INPUT_PATH, Section, TrainStageConfig, UpdateConfig
from align.config.reward import PreferenceDataConfig, SimulateConfig

# TRL 1.16 DPOTrainer's pairwise loss types (DPOConfig.loss_type), plus "kto" through KTOTrainer.
PAIRWISE_LOSSES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "apo_zero", "apo_down", "discopop", "sigmoid_norm",
)  # fmt: skip
DPOLoss = Literal[
    "dpo", "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "apo_zero", "apo_down", "discopop", "sigmoid_norm", "kto",
]  # fmt: skip


class KTOSettings(Section):
    """How rankings become the desirable / undesirable examples KTO learns from."""

    rule: Literal["best_vs_worst", "median"] = Field(
        "best_vs_worst",
        description="best_vs_worst: responses at an item's best rank are desirable, at its worst rank undesirable, "
        "the rest unused; median: better than the item's median rank desirable, worse undesirable, at it unused. "
        "Pairs data: chosen desirable, rejected undesirable.",
    )
    desirable_weight: float = Field(1.0, gt=0, description="KTO's weight on desirable examples.")
    undesirable_weight: float = Field(1.0, gt=0, description="KTO's weight on undesirable examples.")


class DPOEvalConfig(Section):
    test_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of train prompts held out for test when data.test is not given."
    )
    calibration_bins: int = Field(10, ge=2, description="Bins of predicted P(chosen) in the calibration table.")
    batch_size: int = Field(32, ge=1, description="Sequences per forward pass when scoring and generating.")
    gold_world: str | None = Field(
        None,
        description="Demo world whose gold rule the held-out pairs are also judged by (the pipeline sets it).",
        json_schema_extra=INPUT_PATH,
    )
    prompts: str | None = Field(
        None,
        description="Held-out prompts for the SFT-vs-tuned comparison (default: the held-out rankings' prompts).",
        json_schema_extra=INPUT_PATH,
    )
    max_prompts: int = Field(64, ge=1, description="Prompts in the SFT-vs-tuned comparison.")
    max_new_tokens: int = Field(32, ge=1, description="Longest sampled response in the comparison.")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature of the comparison (both policies).")
    gold: str = Field(
        "auto", description="Gold rule for the comparison: 'auto' (from the prompts' world), 'none', or a world dir."
    )
    enabled: bool = Field(True, description="Run the evaluation at the end.")


class DPOConfig(TrainStageConfig):
    """`align dpo`: the SFT model tuned on preference pairs directly; its reference is the SFT model."""

    data: PreferenceDataConfig
    update: UpdateConfig = Field(
        default_factory=UpdateConfig,
        description="lora (the reference is the same model with the adapter off: no second copy), full or partial.",
    )
    loss: DPOLoss = Field(
        "dpo",
        description="dpo (= TRL's sigmoid), ipo, hinge, robust (with label_smoothing), ... any pairwise loss TRL's "
        "DPOTrainer offers; kto trains TRL's KTOTrainer on desirable/undesirable examples (kto.rule).",
    )
    beta: float = Field(0.1, gt=0, description="Strength of the pull toward the reference (DPO's beta; IPO's tau).")
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=0.5, description="Assumed share of flipped preference labels (robust / cDPO, exo_pair)."
    )
    kto: KTOSettings = Field(default_factory=KTOSettings)
    max_prompt_length: int | None = Field(None, ge=1, description="Longest prompt in tokens (TRL truncates the rest).")
    aggregate_annotators: bool = Field(
        False, description="Merge several annotators' rankings of an item before making pairs."
    )
    annotator_weights: Literal["none", "reliability"] = Field(
        "none",
        description="reliability: keep each training pair with probability = its annotator's reliability weight (as "
        "align reward's; seeded), the same expected loss as weighting it, for every TRL pairwise loss; needs rankings "
        "from 2+ annotators on shared items, not aggregated; not with loss kto.",
    )
    margin_from_rank_gap: bool = Field(False, description="Unused by DPO (kept so the reward data reader reads both).")
    simulate: SimulateConfig | None = Field(
        None, description="Demo world only: rank synthesized candidates with simulated annotators (as align reward)."
    )
    reward_model: str | None = Field(
        None,
        description="An `align reward` run to report RM scores with in the comparison (optional).",
        json_schema_extra=INPUT_PATH,
    )
    eval: DPOEvalConfig = Field(default_factory=DPOEvalConfig)

    @field_validator("update")
    @classmethod
    def _supported_update(cls, value: UpdateConfig) -> UpdateConfig:
        if value.mode not in ("lora", "full", "partial"):
            raise ValueError(f"align dpo supports update.mode lora, full or partial, not '{value.mode}'")
        return value

    @model_validator(mode="after")
    def _weights_need_pairs(self) -> DPOConfig:
        if self.annotator_weights == "reliability" and self.loss == "kto":
            raise ValueError(
                "annotator_weights: reliability keeps pairs by their annotator's weight; loss kto learns from single "
                "responses: use a pairwise loss (dpo, ipo, ...) or annotator_weights: none"
            )
        return self

    @property
    def trl_loss(self) -> str:
        return "sigmoid" if self.loss == "dpo" else self.loss
