"""`align reward` config: reward model training."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from align.config.common import INPUT_PATH, DataConfig, Section, TrainStageConfig


class SimulateConfig(Section):
    """Simulated annotators for the demo world (align/reward/demo_data.py)."""

    world: str | None = Field(
        None,
        description="Demo world folder holding gold.jsonl (e.g. 'demo:demo/'); default: the world data.train lies in.",
        json_schema_extra=INPUT_PATH,
    )
    annotators: int = Field(3, ge=1, description="Simulated annotators ranking each item.")
    noise: float = Field(0.3, ge=0.0, description="Std of the gaussian noise each annotator adds to the gold score.")
    candidates: int = Field(4, ge=2, le=8, description="Responses per item, drawn from the synthesized variants.")
    near_miss: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Share of items that get a plausible wrong answer (same type as the right one), hard to tell without knowledge.",
    )
    seed: int = Field(0, description="Seed for candidates and annotator noise.")
    random_annotators: int = Field(
        0,
        ge=0,
        description="How many of the annotators rank at random (the last ones): an unreliable annotator, planted to "
        "measure annotator_weights.",
    )

    @model_validator(mode="after")
    def _random_among_annotators(self) -> SimulateConfig:
        if self.random_annotators > self.annotators:
            raise ValueError(
                f"random_annotators ({self.random_annotators}) cannot exceed annotators ({self.annotators})"
            )
        return self


class RewardEvalConfig(Section):
    test_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of train prompts held out for test when data.test is not given."
    )
    calibration_bins: int = Field(10, ge=2, description="Bins of predicted P(chosen) in the calibration table/plot.")
    compare_untrained: bool = Field(True, description="Also evaluate the untrained model (random head) as a baseline.")
    batch_size: int = Field(64, ge=1, description="Texts per forward pass when scoring for evaluation.")
    gold_world: str | None = Field(
        None,
        description="Demo world whose gold rule the annotators and the model are also compared with "
        "(the pipeline's simulated annotation sets it; with `simulate`, simulate's world is used).",
        json_schema_extra=INPUT_PATH,
    )


class PreferenceDataConfig(DataConfig):
    format: Literal["auto", "rankings", "pairs"] = Field(
        "auto",
        description="rankings (k responses + ranks) or pairs (chosen/rejected); 'auto' detects it from the columns.",
    )


class RewardConfig(TrainStageConfig):
    """`align reward`: a Bradley-Terry reward model from rankings or pairs.

    data.format: 'auto' (detect), 'rankings' or 'pairs'. data.train may also be an annotation
    database URL (sqlite:///..., postgresql://...), read with annotation_ui.io.export_rankings.
    """

    data: PreferenceDataConfig
    loss: Literal["bradley_terry", "plackett_luce"] = Field(
        "bradley_terry",
        description="bradley_terry: every ranking split into pairs; plackett_luce: each whole k-way ranking at once "
        "(ties as unordered groups; needs rankings, not pairs).",
    )
    aggregate_annotators: bool = Field(
        False, description="Merge several annotators' rankings of an item (mean rank) before making pairs."
    )
    annotator_weights: Literal["none", "reliability"] = Field(
        "none",
        description="reliability: weigh each annotator's training examples by their agreement with the others' "
        "consensus (0 at chance, 1 at full agreement; annotation_ui.agreement); needs rankings from 2+ annotators "
        "on shared items, not aggregated.",
    )
    heads: int = Field(
        1,
        ge=1,
        le=32,
        description="Reward heads on the one backbone: 1 is the usual scalar head; 2+ is an ensemble, each head "
        "trained on its own bootstrap resample, whose mean is the reward and whose spread says how sure it is "
        "(RewardScorer.score(..., with_std=True); needed by `align annotate generate --select uncertainty`).",
    )
    margin_from_rank_gap: bool = Field(
        False,
        description="Use the rank gap (rankings) or the score gap (pairs with score_chosen/score_rejected, e.g. "
        "UltraFeedback) as the Bradley-Terry margin.",
    )
    center_rewards_coef: float | None = Field(
        None, ge=0, description="Penalty pulling mean reward to 0 (reward centering)."
    )
    normalize: bool = Field(
        False,
        description="RewardScorer returns (r - mean) / std by default (mean/std of the training responses are always saved).",
    )
    simulate: SimulateConfig | None = Field(
        None,
        description="Demo world only: data.train/test are preference prompts with references; rank synthesized "
        "candidates with simulated annotators, write rankings JSONL into the run dir, and train on them.",
    )
    eval: RewardEvalConfig = Field(default_factory=RewardEvalConfig)

    @model_validator(mode="after")
    def _reliability_needs_annotators(self) -> RewardConfig:
        if self.annotator_weights == "reliability" and self.simulate is not None and self.simulate.annotators < 2:
            raise ValueError(
                "annotator_weights: reliability needs rankings from at least 2 annotators; simulate.annotators is "
                f"{self.simulate.annotators} (raise it, or use annotator_weights: none)"
            )
        return self
