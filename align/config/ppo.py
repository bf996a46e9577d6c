"""`align ppo` config: PPO of a policy against a reward model with a KL penalty.

Sections follow the loop in stages/ppo.py: rollout (sampling), reward (score transforms),
kl (penalty and controller), ppo (epochs, clipping, GAE), optim (two optimizers), critic,
schedule (steps, logging, checkpoints), eval (final SFT-vs-PPO comparison).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from align.config.common import (
    INPUT_PATH,
    DataConfig,
    ModelConfig,
    OutputConfig,
    Section,
    UpdateConfig,
    check_deepspeed_file,
)
from align.data.conversation import PromptFormat


class RolloutSettings(Section):
    batch_size: int = Field(16, ge=1, description="Prompts sampled per PPO step (per process); one response each.")
    max_new_tokens: int = Field(
        32, ge=1, description="Longest response; one that reaches it without EOS is 'truncated'."
    )
    max_prompt_length: int = Field(
        256, ge=1, description="Prompts longer than this many policy tokens are skipped (counted, warned)."
    )
    temperature: float = Field(
        1.0, gt=0, description="Sampling temperature; log-probabilities are taken at the same temperature."
    )
    top_p: float = Field(
        1.0, gt=0, le=1, description="Nucleus sampling; 1.0 samples the full distribution (what PPO assumes)."
    )
    samples_per_prompt: int = Field(
        1, ge=1, description="Responses sampled per prompt (grpo and rloo compare them; at least 2 there)."
    )


REWARD_MODEL = "reward_model"
"""`model: reward_model` in reward.sources names the config's top-level reward_model (the pipeline sets it)."""


class RewardSource(Section):
    """One source of reward: a learned reward model, a built-in rule, or your Python function."""

    model: str | None = Field(
        None,
        description="An `align reward` run dir (or its final/); 'reward_model' names the top-level reward_model.",
        json_schema_extra=INPUT_PATH,
    )
    rule: (
        Literal["exact_answer", "contains_answer", "last_number", "math_answer", "ifeval", "regex", "length"] | None
    ) = Field(
        None,
        description="A built-in check of the completion (align/rl/rules.py): exact_answer / contains_answer / "
        "last_number / math_answer against the record's reference_column, ifeval (the share of the record's "
        "instruction_id_list followed, IFEval's checker), regex (pattern), length (target_words).",
    )
    function: str | None = Field(
        None,
        description="Your reward function, 'path/to/file.py:name' or 'package.module:name', called as "
        "name(prompts=[...], completions=[...], **columns) -> one float or None per completion.",
    )
    environment: bool = Field(
        False,
        description="The environment's own reward() at the end of each episode (tools.env gives the environment).",
    )
    weight: float = Field(1.0, description="Its weight in the aggregate (0 logs it without training on it).")
    name: str | None = Field(None, description="Its name in logs and reports (default: the rule, function or 'rm').")
    reference_column: str = Field("reference", description="Answer rules: the record column holding the answer.")
    pattern: str | None = Field(None, description="regex rule: the pattern to search for in the completion.")
    target_words: int | None = Field(None, ge=1, description="length rule: the ideal length in words.")
    solution_column: str = Field(
        "solution",
        description="math_answer: the record column with a worked solution (its last \\boxed{} is the answer).",
    )
    reading: Literal["strict", "loose"] = Field(
        "strict",
        description="ifeval rule: IFEval's strict reading, or loose (also tried without markdown and "
        "without the first or last line).",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> RewardSource:
        kinds = [k for k in ("model", "rule", "function") if getattr(self, k) is not None]
        kinds += ["environment"] if self.environment else []
        if len(kinds) != 1:
            raise ValueError(
                f"a reward source is exactly one of model, rule, function or environment (got {kinds or 'none'})"
            )
        if self.rule == "regex" and not self.pattern:
            raise ValueError("rule: regex needs a pattern")
        if self.rule == "regex":
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"rule: regex pattern {self.pattern!r} does not compile: {exc}") from None
        if self.rule == "length" and self.target_words is None:
            raise ValueError("rule: length needs target_words")
        if self.function is not None and ":" not in self.function:
            raise ValueError(f"function {self.function!r}: write 'file.py:name' or 'module:name'")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.model is not None:
            return "rm" if self.model == REWARD_MODEL else f"rm:{self.model.rstrip('/').split('/')[-1]}"
        if self.environment:
            return "env"
        return self.rule or self.function.rsplit(":", 1)[1]


class RewardSettings(Section):
    sources: list[RewardSource] = Field(
        default_factory=list,
        description="Weighted reward sources, aggregated per sample (empty: the top-level reward_model alone).",
    )
    aggregate: Literal["sum", "normalize_then_sum"] = Field(
        "sum",
        description="sum: weighted sum of the sources' raw rewards; normalize_then_sum: each source standardised "
        "first, within each prompt's group of samples (over the process's batch when samples_per_prompt is 1). "
        "A source that returns None for a sample adds nothing to it.",
    )
    missing_eos_penalty: float | None = Field(
        1.0,
        ge=0,
        description="Subtracted from the RM score of a response that hit max_new_tokens without EOS (None: off).",
    )
    truncated: Literal["penalty", "zero"] = Field(
        "penalty",
        description="A response cut off at max_new_tokens: 'penalty' subtracts missing_eos_penalty from its score; "
        "'zero' scores it 0 whatever its sources said (a rule cannot credit an unfinished answer).",
    )
    normalize: bool = Field(
        False, description="Normalise RM scores by running mean/std of all scores seen (kept in checkpoints)."
    )
    clip: float | None = Field(None, gt=0, description="Clamp (normalised) scores to [-clip, clip] (None: off).")


class KLSettings(Section):
    estimator: Literal["k1", "k2", "k3"] = Field(
        "k1", description="Per-token KL estimator in the reward (Schulman's k1 = log-ratio, k2, k3)."
    )
    controller: Literal["fixed", "adaptive"] = Field(
        "adaptive", description="Keep kl_coef fixed, or steer KL to `target` (Ziegler et al. 2019)."
    )
    kl_coef: float = Field(
        0.1, ge=0, description="(Initial) weight of the per-token KL penalty; 0 disables the penalty."
    )
    target: float = Field(2.0, gt=0, description="Adaptive: target KL per response (sum over its tokens, nats).")
    horizon: int = Field(2000, ge=1, description="Adaptive: episodes over which the coefficient may change by ~e^0.2.")
    warn_above: float = Field(
        20.0, gt=0, description="Warn when the mean KL per response exceeds this (policy drifting far)."
    )
    apply_to: Literal["reward", "loss"] = Field(
        "reward",
        description="Where the KL penalty acts: per-token in the reward (InstructGPT), or as a k3 term in the "
        "policy loss (GRPO); kl_coef and its controller weigh it either way.",
    )


class PPOSettings(Section):
    epochs: int = Field(4, ge=1, description="Optimisation passes over each rollout batch.")
    minibatch_size: int = Field(
        8, ge=1, description="Responses per gradient step (rollout.batch_size should be a multiple)."
    )
    clip_eps: float = Field(0.2, gt=0, description="Policy ratio clip range epsilon.")
    value_clip_eps: float | None = Field(
        0.2, gt=0, description="Value clip range around the rollout's values (None: unclipped)."
    )
    gamma: float = Field(1.0, ge=0, le=1, description="Discount per token.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda.")
    whiten_advantages: bool = Field(True, description="Whiten advantages over the batch's response tokens.")
    entropy_coef: float = Field(0.0, ge=0, description="Entropy bonus weight in the policy loss.")


class AdvantageSettings(Section):
    estimator: Literal["gae", "grpo", "rloo"] = Field(
        "gae",
        description="gae: PPO with a critic; grpo: (r - group mean) / group std; rloo: leave-one-out baseline. "
        "grpo and rloo build no critic and need rollout.samples_per_prompt >= 2.",
    )
    scale_by_std: bool = Field(True, description="grpo: divide by the group's std (False: centring only, Dr. GRPO).")


class OptimSettings(Section):
    policy_lr: float = Field(
        1e-4, gt=0, description="Policy learning rate (LoRA adapters take larger rates than full models)."
    )
    critic_lr: float = Field(1e-4, gt=0, description="Critic learning rate.")
    lr_scheduler: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="Decay of both rates over `schedule.steps`."
    )
    warmup_steps: int = Field(0, ge=0, description="PPO steps of linear warm-up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm (policy and critic separately).")


class CriticSettings(Section):
    init: Literal["reward", "policy"] = Field(
        "reward",
        description="Start the critic from the reward model (needs the policy's tokenizer) or from the policy's backbone.",
    )


class ScheduleSettings(Section):
    steps: int = Field(100, ge=1, description="PPO steps (one rollout batch each).")
    seed: int = Field(42, description="Seed for prompt order, sampling and initialisation.")
    logging_steps: int = Field(1, ge=1, description="Write metrics every N steps.")
    sample_steps: int = Field(10, ge=1, description="Write a table of sample prompts/responses every N steps.")
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps (None: only at the end).")
    save_total_limit: int | None = Field(2, ge=1, description="Keep at most this many checkpoints.")
    accuracy_steps: int | None = Field(
        None,
        ge=1,
        description="Every N steps (and at the end), the rule and function reward sources score greedy answers to "
        "eval.max_prompts held-out prompts (data.test), logged as heldout/<source> beside the training reward "
        "(None: at the end only).",
    )


class ToolSettings(Section):
    """Multi-turn rollouts: the policy calls the environment's tools and reads their answers."""

    env: str | None = Field(
        None,
        description="The environment: a built-in name (calculator) or your class, 'path/to/file.py:ClassName' "
        "(docs: Tools and environments). None: one answer per prompt, no tools.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments for the environment class, e.g. {index: runs/index, k: 3} for retrieval.",
    )
    max_turns: int = Field(4, ge=1, description="Model turns per episode; a call in the last one is left unanswered.")
    max_tokens: int | None = Field(
        None,
        ge=1,
        description="Tokens after the prompt per episode, the model's and the tools' together "
        "(None: rollout.max_new_tokens x max_turns). Each turn is at most rollout.max_new_tokens.",
    )
    call_format: Literal["auto", "tagged", "llama3"] = Field(
        "auto",
        description="How the model writes a call: tagged (<tool_call> JSON: Hermes, Qwen, SmolLM2), llama3 "
        "(JSON turns), or auto (read from the chat template).",
    )
    timeout_s: float = Field(10.0, gt=0, description="Seconds a tool call may take; then the model reads an error.")


class EvalSettings(Section):
    max_prompts: int = Field(64, ge=1, description="Held-out prompts (data.test) for the final SFT-vs-PPO comparison.")
    temperature: float = Field(
        0.7, gt=0, description="Sampling temperature for the comparison (same for both policies)."
    )
    gold: str = Field(
        "auto",
        description="'auto': use the demo world's gold preference when the prompts come from one; 'none'; or a world dir.",
    )
    enabled: bool = Field(True, description="Run the final comparison.")
    batch_size: int = Field(
        32, ge=1, description="Prompts generated together in the comparison (with the seed, fixes the samples)."
    )


class PromptDataConfig(DataConfig):
    format: PromptFormat = Field(
        "auto",
        description="Prompt records: messages, alpaca or prompt_completion (answers are dropped); 'auto' detects it.",
    )


class PPOConfig(Section):
    """`align ppo`: PPO of the policy against a reward model with a KL penalty."""

    policy: ModelConfig
    update: UpdateConfig = Field(
        default_factory=UpdateConfig,
        description="'lora' (a fresh adapter; reference = adapter off) or 'full' (a frozen copy is the reference).",
    )
    reward_model: str | None = Field(
        None,
        description="An `align reward` run dir (or its final/); needed unless reward.sources gives the reward.",
        json_schema_extra=INPUT_PATH,
    )
    reference: str | None = Field(
        None,
        description="The model the KL penalty (and the eval's 'sft' column) is measured against, e.g. the SFT run "
        "while `policy` continues a later checkpoint (the pipeline's later rounds); default: the policy as it starts.",
        json_schema_extra=INPUT_PATH,
    )
    data: PromptDataConfig
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    reward: RewardSettings = Field(default_factory=RewardSettings)
    tools: ToolSettings = Field(default_factory=ToolSettings)
    kl: KLSettings = Field(default_factory=KLSettings)
    ppo: PPOSettings = Field(default_factory=PPOSettings)
    advantage: AdvantageSettings = Field(default_factory=AdvantageSettings)
    optim: OptimSettings = Field(default_factory=OptimSettings)
    critic: CriticSettings = Field(default_factory=CriticSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    output: OutputConfig = Field(default_factory=OutputConfig)
    deepspeed: str | None = Field(
        None, description="DeepSpeed JSON for policy and critic, e.g. configs/deepspeed/zero2.json."
    )

    _check_deepspeed = field_validator("deepspeed")(classmethod(lambda cls, v: check_deepspeed_file(v)))

    @field_validator("update")
    @classmethod
    def _supported_update(cls, value: UpdateConfig) -> UpdateConfig:
        if value.mode not in ("lora", "full"):
            raise ValueError(f"PPO supports update.mode 'lora' or 'full', not '{value.mode}'")
        return value

    @property
    def uses_critic(self) -> bool:
        return self.advantage.estimator == "gae"

    @property
    def episode_tokens(self) -> int:
        """Tokens after the prompt of one episode with tools (the model's and the tools' together)."""
        return self.tools.max_tokens or self.rollout.max_new_tokens * self.tools.max_turns

    @property
    def method(self) -> str:
        """ppo (GAE with a critic), grpo or rloo: the name results are reported under."""
        return "ppo" if self.uses_critic else self.advantage.estimator

    @property
    def reward_sources(self) -> list[RewardSource]:
        """What the reward is made of: reward.sources, or the top-level reward_model alone."""
        return list(self.reward.sources) or [RewardSource(model=REWARD_MODEL)]

    @property
    def learned_reward_model(self) -> str | None:
        """The first learned reward model among the sources (the critic's start and the eval's RM column)."""
        for source in self.reward_sources:
            if source.model is not None:
                return self.reward_model if source.model == REWARD_MODEL else source.model
        return None

    @model_validator(mode="after")
    def _reward_is_defined(self) -> PPOConfig:
        if not self.reward.sources and self.reward_model is None:
            raise ValueError("give reward_model (an `align reward` run) or reward.sources (rules, functions, models)")
        if any(s.model == REWARD_MODEL for s in self.reward.sources) and self.reward_model is None:
            raise ValueError("reward.sources names model: reward_model, but reward_model is not set")
        if any(s.environment for s in self.reward.sources) and self.tools.env is None:
            raise ValueError("reward.sources has environment: true, but tools.env names no environment")
        labels = [s.label for s in self.reward_sources]
        if len(set(labels)) != len(labels):
            raise ValueError(f"two reward sources share a name ({labels}); give them distinct `name`s")
        if self.uses_critic and self.critic.init == "reward" and self.learned_reward_model is None:
            raise ValueError(
                "critic.init = reward starts the critic from a learned reward model, and reward.sources has none; "
                "set critic.init: policy"
            )
        return self

    @model_validator(mode="after")
    def _minibatches_fit(self) -> PPOConfig:
        responses = self.rollout.batch_size * self.rollout.samples_per_prompt
        if responses % self.ppo.minibatch_size:
            raise ValueError(
                f"rollout.batch_size x rollout.samples_per_prompt ({responses} responses) must be a multiple of "
                f"ppo.minibatch_size ({self.ppo.minibatch_size})"
            )
        if not self.uses_critic and self.rollout.samples_per_prompt < 2:
            raise ValueError(
                f"advantage.estimator = {self.advantage.estimator} compares several responses to the same prompt: "
                f"set rollout.samples_per_prompt to 2 or more (it is {self.rollout.samples_per_prompt}; 4-8 is usual)"
            )
        return self
