"""`align pipeline` and `align demo` configs.

The pipeline names one config file per stage (each runnable on its own) and wires their
inputs and outputs together: every stage writes under the pipeline dir and reads the
previous stage's output, whatever paths the stage files name.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from align.config.common import INPUT_PATH, OutputConfig, Section

Method = Literal["ppo", "grpo", "rloo", "dpo"]
METHOD_STAGE = {"ppo": "ppo", "grpo": "ppo", "rloo": "ppo", "dpo": "dpo"}  # the align stage each method runs


class StageSpec(Section):
    config: str = Field(description="The stage's own YAML (e.g. configs/sft_demo.yaml).", json_schema_extra=INPUT_PATH)
    overrides: list[str] = Field(default_factory=list, description="Dotted key=value overrides applied to that YAML.")


class CandidateSettings(Section):
    """Sampling k responses per preference prompt from the SFT model (what annotators rank)."""

    prompts: str = Field(
        "preference/train.jsonl", description="Prompts file; a relative path is taken inside the demo world."
    )
    max_prompts: int | None = Field(200, ge=1, description="Use the first N prompts (None: all).")
    k: int = Field(4, ge=2, description="Distinct responses per prompt.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (diversity of the candidates).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(32, ge=1, description="Longest candidate, in tokens.")
    batch_size: int = Field(16, ge=1, description="Prompts sampled together.")
    seed: int = Field(0, description="Sampling seed.")
    budget: int | None = Field(
        None,
        ge=1,
        description="Items people rank per round (None: one per prompt). Round 1 picks them at random; later rounds "
        "by `select`.",
    )
    select: Literal["random", "uncertainty"] = Field(
        "uncertainty",
        description="How rounds 2+ pick their `budget` items: where the previous round's reward model ensemble "
        "disagrees most (needs reward heads >= 2), or at random (the control).",
    )
    pool_k: int | None = Field(
        None, ge=2, description="Responses sampled per prompt before k are chosen (default 2k when a budget is set)."
    )


class AnnotationSettings(Section):
    mode: Literal["simulated", "human"] = Field(
        "simulated",
        description="'simulated': gold rule + noise ranks at once; 'human': stop, serve the app, resume when the quota is met.",
    )
    min_annotations_per_item: int = Field(
        2, ge=1, description="Rankings wanted per item before the reward model trains."
    )
    annotators: int = Field(3, ge=1, description="Simulated annotators (simulated mode).")
    noise: float = Field(0.3, ge=0, description="Simulated annotators' noise on the gold score.")
    seed: int = Field(0, description="Simulated annotators' seed.")
    aggregate: bool = Field(False, description="Export one aggregated ranking per item instead of one per annotator.")
    port: int = Field(
        7860, ge=1, le=65535, description="Port printed in the `align annotate serve` command (human mode)."
    )


class PipelineData(Section):
    """Your data instead of a demo world: each entry a file, a folder, a `datasets` name or a public
    set (`data:<name>`); it replaces what the stage YAMLs name for that role."""

    sft: str | None = Field(None, description="SFT training records (the sft stage's data.train).")
    sft_validation: str | None = Field(None, description="SFT validation records (the sft stage's data.validation).")
    prompts: str | None = Field(
        None,
        description="Prompts: what candidates are sampled for (annotation) and what the online methods train on "
        "(their data.train).",
    )
    preferences: str | None = Field(
        None,
        description="Preference data (pairs or rankings) the reward model and DPO train on; with it there is no "
        "candidates or annotation step.",
    )
    qa: dict[str, str] | None = Field(None, description="The eval's QA sets, name -> file (replaces the eval YAML's).")


class PipelineConfig(Section):
    """`align pipeline`: demo world -> SFT -> candidates -> annotation -> reward -> methods -> eval."""

    world: Literal["demo", "tiny", "none"] = Field(
        "demo",
        description="Demo world to build and use; 'none' (implied by a `data` section): your data, relative paths "
        "read from where you run it.",
    )
    data: PipelineData | None = Field(
        None, description="Your data, by role (sft, sft_validation, prompts, preferences, qa), instead of a world."
    )
    seed: int = Field(0, description="Demo world seed.")
    training_seed: int | None = Field(
        None,
        description="Seed of every training stage (sft/reward/dpo training.seed, the online methods' schedule.seed); "
        "None: each stage YAML's own. With candidates.seed and annotation.seed it reruns the chain at other seeds "
        "(bench/seeds.py).",
    )
    precision: Literal["auto", "fp32", "bf16"] | None = Field(
        None,
        description="Arithmetic of every stage's forward passes (the stages' model.precision / policy.precision / "
        "precision) and of the candidates' sampling; None: each stage YAML's own ('auto' unless it says).",
    )
    sft: StageSpec
    reward: StageSpec
    methods: list[Method] = Field(
        default_factory=lambda: ["ppo"],
        min_length=1,
        description="Ways to learn from the rankings, each from the same SFT model (online ones against the same "
        "reward model): ppo, grpo, rloo (align ppo with that estimator), dpo (align dpo).",
    )
    ppo: StageSpec | None = Field(None, description="align ppo YAML for the 'ppo' method.")
    grpo: StageSpec | None = Field(None, description="align ppo YAML with advantage.estimator=grpo.")
    rloo: StageSpec | None = Field(None, description="align ppo YAML with advantage.estimator=rloo.")
    dpo: StageSpec | None = Field(None, description="align dpo YAML (trains on the exported rankings).")
    eval: StageSpec
    reward_backbone: Literal["sft", "config"] = Field(
        "sft",
        description="'sft': the reward model starts from the SFT model (InstructGPT); 'config': the reward YAML's model.",
    )
    rounds: int = Field(
        1,
        ge=1,
        description="Rounds of the feedback loop: round r samples candidates from round r-1's policy, selects "
        "candidates.budget items, gets them ranked, retrains the reward model on all rankings so far, and runs the "
        "method again from round r-1's policy (its KL measured against `rounds_reference`). Needs one method.",
    )
    rounds_reference: Literal["sft", "previous"] = Field(
        "sft",
        description="What later rounds' online method measures its KL penalty against: the SFT model (every round "
        "anchored where round 1 started, as InstructGPT's KL is to SFT) or the previous round's policy (the anchor "
        "moves each round). DPO's reference is always its starting policy.",
    )
    benchmarks: Literal["none", "quick", "full"] = Field(
        "none",
        description="Public benchmarks for every system of the eval step (the alignment tax): 'quick' = seeded samples "
        "of a few hundred items of IFEval, GSM8K, ARC-Easy/Challenge, HellaSwag, PIQA and Wikipedia bits per byte; "
        "'full' = those sets whole (hours on a CPU); 'none' = the eval YAML's own `benchmarks`.",
    )
    candidates: CandidateSettings = Field(default_factory=CandidateSettings)
    annotation: AnnotationSettings = Field(default_factory=AnnotationSettings)
    report_samples: int = Field(
        6, ge=0, description="Prompts whose base / SFT / PPO answers are shown side by side in the report."
    )
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="before")
    @classmethod
    def _data_means_no_world(cls, data):
        if isinstance(data, dict) and data.get("data") is not None and "world" not in data:
            return {**data, "world": "none"}
        return data

    @model_validator(mode="after")
    def _data_or_world(self) -> PipelineConfig:
        if self.data is not None and self.world != "none":
            raise ValueError(f"a pipeline on your data (a `data` section) has no demo world: drop world: {self.world}")
        preferences = self.data is not None and self.data.preferences is not None
        if self.world == "none" and not preferences and self.annotation.mode == "simulated":
            raise ValueError(
                "simulated annotators rank by the demo world's gold rule, and this pipeline has no world: give "
                "data.preferences (pairs or rankings to train on), or annotation.mode: human (people rank the candidates)"
            )
        if preferences and self.rounds > 1:
            raise ValueError(
                "rounds > 1 collect new rankings each round; with data.preferences there is no annotation step: "
                "use rounds: 1, or drop data.preferences and annotate"
            )
        return self

    @model_validator(mode="after")
    def _each_method_has_its_config(self) -> PipelineConfig:
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods lists a method twice: {self.methods}")
        if self.rounds > 1 and len(self.methods) != 1:
            raise ValueError(
                f"rounds: {self.rounds} carries one policy from round to round, but methods lists "
                f"{', '.join(self.methods)}; keep one (e.g. methods: [{self.methods[0]}])"
            )
        missing = [m for m in self.methods if getattr(self, m) is None]
        if missing:
            example = {"ppo": "ppo_demo", "grpo": "ppo_grpo_demo", "rloo": "ppo_rloo_demo", "dpo": "dpo_demo"}
            raise ValueError(
                f"methods lists {', '.join(missing)} but the pipeline config has no "
                + ", ".join(f"{m}: {{config: configs/{example[m]}.yaml}}" for m in missing)
            )
        return self


class DemoConfig(Section):
    """`align demo`: build the demo world."""

    size: Literal["demo", "tiny"] = Field(
        "demo", description="'demo': the 2.7M-parameter world the quick start uses; 'tiny': a smaller one for tests."
    )
    seed: int = Field(0, description="World seed: another seed builds (and pre-trains) another world.")
