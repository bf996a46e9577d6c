"""Steps 2-5 of a PPO step as one record: generate, score, shape rewards with the KL penalty,
and estimate advantages, for one batch of prompts. `step_metrics` reads every logged figure
from that record, so each figure is computed in one place.

Shapes: B responses in the batch, R = longest response (see align.generation for the
rollout layout). Every (B, R) tensor is zero where `rollout.response_mask` is 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import torch

from align.config.ppo import PPOConfig, RewardSettings
from align.errors import TrainingDiverged
from align.generation import GenerationSettings, Rollout, decode_responses, generate
from align.ppo.engines import Optimised
from align.ppo.models import Policy
from align.ppo.prompts import TokenizedPrompt
from align.ppo.scoring import RewardSources, with_env_rewards
from align.rl.advantages import gae, masked_mean, masked_sum, masked_whiten
from align.rl.group import group_advantages, token_advantages
from align.rl.kl import kl_per_token, sequence_kl
from align.rl.losses import explained_variance
from align.rl.rewards import RunningMoments, clip_scores, penalize_missing_eos, shaped_rewards, zero_truncated
from align.rl.rollout import token_logprobs, token_values
from align.tools.calls import family_of
from align.tools.episodes import Episode, EpisodeSettings, episode_metrics, run_episodes


@dataclass
class Experience:
    """One rollout batch and everything PPO derives from it."""

    prompts: list[str]  # B user requests as text (what the reward model and gold rule read)
    responses: list[str]  # B decoded responses
    rollout: Rollout  # query (B, P), response ids / mask (B, R), ended (B,)
    logprobs: (
        torch.Tensor | None
    )  # (B, R) log pi_old(a_t | s_t) at the sampling temperature (None: the update fills it)
    ref_logprobs: torch.Tensor  # (B, R) the same under the frozen reference
    values: torch.Tensor | None  # (B, R) V_old(s_t) from the critic (None: grpo / rloo build no critic)
    raw_scores: torch.Tensor  # (B,) the aggregate of the reward sources (the reward model's score alone by default)
    scores: torch.Tensor  # (B,) after the missing-EOS penalty, normalisation and clipping
    gold_scores: torch.Tensor | None  # (B,) the demo world's gold rule, when known
    kl: torch.Tensor | None  # (B, R) per-token KL estimate (kl.estimator; None until logprobs are known)
    kl_penalty: torch.Tensor  # (B, R) -kl_coef * kl: the non-score part of the reward
    rewards: torch.Tensor  # (B, R) kl_penalty + the score on each response's last token
    advantages: torch.Tensor  # (B, R) GAE (whitened if configured), or the group advantage on every token
    returns: torch.Tensor | None  # (B, R) advantages + values, the critic's target (None without a critic)
    source_values: torch.Tensor | None = None  # (B, S) each reward source's value, NaN where it said nothing
    episodes: list[Episode] | None = None  # multi-turn rollouts: each row's transcript (responses are final turns)

    @property
    def mask(self) -> torch.Tensor:
        return self.rollout.response_mask

    def select(self, index: torch.Tensor) -> Experience:
        """The rows in `index` (a minibatch)."""
        rows = index.tolist()
        picked = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                picked[f.name] = None
            elif isinstance(value, list):
                picked[f.name] = [value[i] for i in rows]
            elif isinstance(value, Rollout):
                picked[f.name] = value.select(index)
            else:
                picked[f.name] = value[index]
        return Experience(**picked)


@contextmanager
def timed(times: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    times[key] = times.get(key, 0.0) + time.perf_counter() - start


def episode_settings(config: PPOConfig, tokenizer) -> EpisodeSettings:
    tools = config.tools
    call_format = family_of(tokenizer.chat_template) if tools.call_format == "auto" else tools.call_format
    return EpisodeSettings(tools.max_turns, config.episode_tokens, call_format, tools.timeout_s)


def old_logprobs_needed(config: PPOConfig, rows: int) -> bool:
    """Whether the policy's log-probs must be taken before the update. They shape the reward
    when the KL is in it, and they differ from the update's own when the policy moves before a
    minibatch reads them (several epochs or minibatches). Otherwise the update's forward gives
    them exactly, and a whole forward pass per step is saved (TRL's GRPO does the same)."""
    return config.kl.apply_to == "reward" or config.ppo.epochs > 1 or config.ppo.minibatch_size < rows


def complete_on_policy(exp: Experience, estimator: str) -> None:
    """After an update that filled `exp.logprobs` (see `old_logprobs_needed`), the KL figures."""
    if exp.kl is None:
        exp.kl = kl_per_token(exp.logprobs, exp.ref_logprobs, exp.mask, estimator)


def transform_scores(
    raw: torch.Tensor, ended: torch.Tensor, settings: RewardSettings, moments: RunningMoments
) -> torch.Tensor:
    """RM score -> the score PPO optimises: truncated responses penalised or zeroed, running
    normalisation, clipping."""
    scores = raw
    if settings.truncated == "zero":
        scores = zero_truncated(scores, ended)
    elif settings.missing_eos_penalty:
        scores = penalize_missing_eos(scores, ended, settings.missing_eos_penalty)
    if settings.normalize:
        moments.update(scores)
        scores = moments.normalise(scores)
    return clip_scores(scores, settings.clip)


def make_experience(
    config: PPOConfig,
    policy: Policy,
    actor: Optimised,
    critic: Optimised | None,
    sources: RewardSources,
    gold,
    batch: Sequence[TokenizedPrompt],
    gen: GenerationSettings,
    moments: RunningMoments,
    kl_coef: float,
    times: dict[str, float] | None = None,
    environment: Callable[[], Any] | None = None,
) -> Experience:
    """Generate `gen.samples_per_prompt` responses to each prompt of `batch`, score them, and compute
    KL-shaped rewards and advantages (GAE with the critic, or grpo / rloo within each prompt's group).
    `times` collects time_generate / time_score / time_train (seconds)."""
    times = {} if times is None else times
    n = gen.samples_per_prompt
    texts = [p.text for p in batch for _ in range(n)]  # prompt-major, like the rollout's rows
    records = [p.record for p in batch for _ in range(n)]
    episodes = None
    with timed(times, "time_generate"):  # 2. generate: one answer, or episodes with tools
        if environment is None:
            rollout = generate(actor.module, [p.ids for p in batch], gen)
            responses = decode_responses(policy.tokenizer, rollout)
        else:
            rollout, episodes = run_episodes(
                actor.module, policy.tokenizer, [p.messages for p in batch], [p.record for p in batch], environment, gen,
                episode_settings(config, policy.tokenizer),
            )  # fmt: skip
            responses = [e.final_text for e in episodes]
            records = with_env_rewards(records, episodes)
    mask = rollout.response_mask

    with timed(times, "time_score"):  # 3. score (text in: the reward model may use another tokenizer)
        scored = sources.score(texts, responses, records)
        raw = scored.aggregate
        scores = transform_scores(raw, rollout.ended, config.reward, moments)
        gold_scores = torch.tensor([gold.score(p, r) for p, r in zip(texts, responses)]) if gold is not None else None

    with timed(times, "time_train"):
        with torch.no_grad():  # 4. one forward each of policy (when needed), reference and critic
            logprobs = kl = None
            if old_logprobs_needed(config, mask.shape[0]):
                logprobs, _ = token_logprobs(actor.forward_module, rollout, gen.temperature)
            with policy.reference() as ref:
                ref_logprobs, _ = token_logprobs(ref, rollout, gen.temperature)
            values = token_values(critic.forward_module, rollout) if critic is not None else None
        if logprobs is not None:
            kl = kl_per_token(logprobs, ref_logprobs, mask, config.kl.estimator)
        in_reward = kl_coef if config.kl.apply_to == "reward" else 0.0  # else the update adds it to the loss
        rewards, kl_penalty = shaped_rewards(scores, torch.zeros_like(mask) if kl is None else kl, mask, in_reward)
        if not torch.isfinite(rewards).all():
            raise TrainingDiverged(
                "non-finite per-token rewards (NaN/inf) before the update; the step was stopped and no weight changed. "
                "Check the policy's log-probs (dtype, temperature), lower optim.policy_lr, or set reward.clip"
            )
        if values is not None:  # 5. advantages: GAE against the critic
            advantages, returns = gae(rewards, values, mask, config.ppo.gamma, config.ppo.lam)
            if config.ppo.whiten_advantages:
                advantages = masked_whiten(advantages, mask)
        else:  # ... or each response's whole (KL-shaped) reward against the other responses to its prompt
            per_response = group_advantages(
                rewards.sum(1), n, config.advantage.estimator, config.advantage.scale_by_std
            )
            advantages, returns = token_advantages(per_response, mask), None
    return Experience(
        texts,
        responses,
        rollout,
        logprobs,
        ref_logprobs,
        values,
        raw,
        scores,
        gold_scores,
        kl,
        kl_penalty,
        rewards,
        advantages,
        returns,
        scored.values.T.contiguous(),
        episodes,
    )


def source_metrics(values: torch.Tensor, labels: Sequence[str], prefix: str = "reward/") -> dict[str, float]:
    """Each source's mean and std over the samples it spoke about ((B, S) values, NaN = None)."""
    metrics = {}
    for column, label in zip(values.T, labels):
        said = column[~torch.isnan(column)]
        metrics[f"{prefix}{label}"] = float(said.mean()) if said.numel() else float("nan")
        metrics[f"{prefix}{label}_std"] = float(said.std()) if said.numel() > 1 else 0.0
        if said.numel() < column.numel():
            metrics[f"{prefix}{label}_none_share"] = 1 - said.numel() / column.numel()
    return metrics


def step_metrics(exp: Experience, kl_coef: float, estimator: str, labels: Sequence[str] = ()) -> dict[str, float]:
    """The figures one step logs, all from its Experience ("kl" is the k1 sum per response);
    with several reward sources (`labels`), each one's mean and std as reward/<label>."""
    mask, raw = exp.mask, exp.raw_scores
    metrics = {
        "rm_score": float(raw.mean()),
        "rm_score_std": float(raw.std()) if raw.numel() > 1 else 0.0,
        "score": float(exp.scores.mean()),
        "kl": float(sequence_kl(exp.logprobs, exp.ref_logprobs, mask).mean()),
        f"kl_{estimator}": float(masked_sum(exp.kl, mask, 1).mean()),
        "kl_per_token": float(masked_mean(exp.kl, mask)),
        "kl_coef": kl_coef,
        "non_score_reward": float(masked_sum(exp.kl_penalty, mask, 1).mean()),
        "response_length": float(mask.sum(1).mean()),
        "no_eos_share": float((~exp.rollout.ended).float().mean()),
        "empty_share": sum(not r for r in exp.responses) / len(exp.responses),
    }
    if exp.values is not None:
        metrics["explained_variance"] = float(explained_variance(exp.values, exp.returns, mask))
        metrics["returns_mean"] = float(masked_mean(exp.returns, mask))
        metrics["values_mean"] = float(masked_mean(exp.values, mask))
    else:
        metrics["advantage_abs_mean"] = float(masked_mean(exp.advantages.abs(), mask))
    if exp.gold_scores is not None:
        metrics["gold_score"] = float(exp.gold_scores.mean())
    if exp.source_values is not None and labels and (len(labels) > 1 or labels[0] != "rm"):
        metrics.update(source_metrics(exp.source_values, labels))
    if exp.episodes is not None:
        metrics.update(episode_metrics(exp.episodes))
    return metrics


def sample_rows(exp: Experience) -> list[dict]:
    """One row per response for samples.jsonl: prompt, response, RM score (and gold)."""
    rows = []
    for i, (prompt, response) in enumerate(zip(exp.prompts, exp.responses)):
        row = {"prompt": prompt, "response": response, "rm_score": float(exp.raw_scores[i])}
        if exp.gold_scores is not None:
            row["gold"] = float(exp.gold_scores[i])
        if exp.episodes is not None:
            row["transcript"] = exp.episodes[i].messages
        rows.append(row)
    return rows


def sample_cells(row: dict) -> dict:
    """A samples.jsonl row as table cells: a tool transcript as its turns' text, one per line."""
    if "transcript" not in row:
        return row
    turns = "\n".join(f"[{m['role']}] {m.get('content') or ''}" for m in row["transcript"])
    return {**{k: v for k, v in row.items() if k != "transcript"}, "transcript": turns}
