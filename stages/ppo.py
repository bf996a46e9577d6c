"""`align ppo`: PPO of the policy against a reward model with a KL penalty.

One step = 1. sample prompts, 2. generate, 3. score, 4. KL-shaped rewards, 5. advantages,
6. PPO epochs over shuffled minibatches, 7. log, 8. checkpoint; after the last step,
9. compare SFT and PPO on held-out prompts and write final/, eval.json and report.md.
The math lives in align/rl/, the model/file plumbing in align/ppo/.
"""

from __future__ import annotations

import json
import random
import sys
import time
from contextlib import contextmanager

import numpy as np
import torch
from tqdm.auto import tqdm

from align.config.loader import to_yaml
from align.config.ppo import KLSettings, PPOConfig, RewardSettings
from align.distributed import barrier, is_main_process, rank, world_size
from align.errors import AlignInputError
from align.models import resolve_model_path
from align.ppo.checkpoint import (
    LoopState,
    find_resume_point,
    read_checkpoint,
    write_checkpoint,
    write_deepspeed_checkpoint,
)
from align.ppo.engines import make_optimised
from align.ppo.evaluate import compare_policies, find_world, load_gold
from align.ppo.models import Policy, build_critic, build_policy, describe, save_final
from align.ppo.prompts import PromptSampler, load_prompts
from align.ppo.report import write_report
from align.ppo.scoring import load_scorer, score_texts
from align.ppo.update import Experience, Optimised, ppo_update
from align.rl.advantages import gae, masked_mean, masked_sum, masked_whiten
from align.rl.kl import kl_per_token
from align.rl.kl_controller import AdaptiveKLController, FixedKLController
from align.rl.losses import explained_variance
from align.rl.rewards import (
    RunningMoments,
    clip_scores,
    penalize_missing_eos,
    shaped_rewards,
)
from align.rl.rollout import (
    GenerationSettings,
    decode_responses,
    gathered_params,
    generate,
    token_logprobs,
    token_values,
)
from align.rundir import RunDir, RunResult


# -- small helpers ---------------------------------------------------------------------------
def make_kl_controller(settings: KLSettings):
    if settings.controller == "adaptive" and settings.kl_coef > 0:
        return AdaptiveKLController(settings.kl_coef, settings.target, settings.horizon)
    return FixedKLController(settings.kl_coef)


def transform_scores(raw: torch.Tensor, ended: torch.Tensor, settings: RewardSettings, moments: RunningMoments) -> torch.Tensor:
    """RM score -> the score PPO optimises: missing-EOS penalty, running normalisation, clipping."""
    scores = raw
    if settings.missing_eos_penalty:
        scores = penalize_missing_eos(scores, ended, settings.missing_eos_penalty)
    if settings.normalize:
        moments.update(scores)
        scores = moments.normalise(scores)
    return clip_scores(scores, settings.clip)


@contextmanager
def timed(times: dict, key: str):
    start = time.perf_counter()
    yield
    times[key] = times.get(key, 0.0) + time.perf_counter() - start


def warn(message: str) -> None:
    if is_main_process():
        print(f"WARNING: {message}", file=sys.stderr, flush=True)


def generation_settings(policy: Policy, max_new_tokens: int, temperature: float, top_p: float) -> GenerationSettings:
    tok = policy.tokenizer
    eos = {tok.eos_token_id}
    gen_eos = getattr(getattr(policy.model, "generation_config", None), "eos_token_id", None)
    eos |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
    return GenerationSettings(max_new_tokens, temperature, top_p, tuple(sorted(e for e in eos if e is not None)), tok.pad_token_id)


def check_context(config: PPOConfig, policy: Policy) -> None:
    limit = getattr(policy.model.config, "max_position_embeddings", None)
    need = config.rollout.max_prompt_length + config.rollout.max_new_tokens
    if limit is not None and need > limit:
        raise AlignInputError(
            f"rollout.max_prompt_length + rollout.max_new_tokens = {need} exceeds the policy's context of {limit} tokens; "
            f"lower rollout.max_prompt_length to at most {limit - config.rollout.max_new_tokens}"
        )


def create_run_dir(config: PPOConfig) -> RunDir:
    """Rank 0 creates (or checks) the run dir; the other ranks get the same path (RunDir.create)."""
    return RunDir.create(config.output.output_dir, "ppo", config.output.overwrite, config.output.resume)


# -- one PPO step ----------------------------------------------------------------------------
def ppo_step(config: PPOConfig, policy: Policy, actor: Optimised, critic: Optimised, scorer, gold, prompts, loop: LoopState, gen: GenerationSettings):
    """Steps 1-6 of the loop; returns (metrics, samples for the table)."""
    times: dict[str, float] = {}
    # 1. sample prompts (each rank its own slice of the global batch)
    global_batch = loop.sampler.next_batch()
    mine = global_batch[rank() :: world_size()]
    batch = [prompts[i] for i in mine]
    texts = [p.text for p in batch]

    # 2. generate
    with timed(times, "time_generate"):
        rollout = generate(actor.module, [p.ids for p in batch], gen)
        responses = decode_responses(policy.tokenizer, rollout)
    mask = rollout.response_mask

    # 3. score with the reward model (text in: it may use another tokenizer), and the gold rule if any
    with timed(times, "time_score"):
        raw = score_texts(scorer, texts, responses)
        scores = transform_scores(raw, rollout.ended, config.reward, loop.moments)
        gold_scores = torch.tensor([gold.score(p, r) for p, r in zip(texts, responses)]) if gold is not None else None

    with timed(times, "time_train"):
        # 4. KL-shaped rewards, from one forward each of policy, reference and critic
        with torch.no_grad():
            old_logprobs, _ = token_logprobs(actor.forward_module, rollout, gen.temperature)
            with policy.reference() as ref:
                ref_logprobs, _ = token_logprobs(ref, rollout, gen.temperature)
            old_values = token_values(critic.forward_module, rollout)
        kl = kl_per_token(old_logprobs, ref_logprobs, mask, config.kl.estimator)
        rewards, kl_penalty = shaped_rewards(scores, kl, mask, loop.kl_controller.value)
        if not torch.isfinite(rewards).all():
            raise AlignInputError(
                "non-finite per-token rewards (NaN/inf) before the update; the step was stopped and no weight changed. "
                "Check the policy's log-probs (dtype, temperature) and reward.clip"
            )

        # 5. advantages (GAE) and returns
        advantages, returns = gae(rewards, old_values, mask, config.ppo.gamma, config.ppo.lam)
        if config.ppo.whiten_advantages:
            advantages = masked_whiten(advantages, mask)

        # 6. PPO epochs over shuffled minibatches
        exp = Experience(rollout, old_logprobs, old_values, advantages, returns)
        stats = ppo_update(actor, critic, exp, config.ppo, gen.temperature, loop.shuffle)

    seq_kl = masked_sum(kl_per_token(old_logprobs, ref_logprobs, mask, "k1"), mask, dim=1)
    lengths = mask.sum(1)
    metrics = {
        "rm_score": float(raw.mean()), "rm_score_std": float(raw.std()) if raw.numel() > 1 else 0.0,
        "score": float(scores.mean()),
        "kl": float(seq_kl.mean()), f"kl_{config.kl.estimator}": float(masked_sum(kl, mask, 1).mean()),
        "kl_per_token": float(masked_mean(kl, mask)), "kl_coef": loop.kl_controller.value,
        "non_score_reward": float(masked_sum(kl_penalty, mask, 1).mean()),
        "response_length": float(lengths.mean()), "no_eos_share": float((~rollout.ended).float().mean()),
        "empty_share": sum(not r for r in responses) / len(responses),
        "explained_variance": float(explained_variance(old_values, returns, mask)),
        "returns_mean": float(masked_mean(returns, mask)), "values_mean": float(masked_mean(old_values, mask)),
        **stats, **times,
    }
    if gold_scores is not None:
        metrics["gold_score"] = float(gold_scores.mean())
    samples = [
        {"prompt": p, "response": r, "rm_score": float(s), **({"gold": float(g)} if gold_scores is not None else {})}
        for p, r, s, g in zip(texts, responses, raw, gold_scores if gold_scores is not None else raw)
    ]
    loop.kl_controller.update(metrics["kl"], len(global_batch))  # the coefficient for the next step
    return metrics, samples


class HealthCheck:
    """Warnings a user can act on, instead of a silently broken run.

    k1 KL is noisy per batch, so "negative" is judged on the mean of the last `window` steps.
    """

    def __init__(self, config: PPOConfig, window: int = 5):
        self.config, self.window, self.recent_kl = config, window, []

    def __call__(self, metrics: dict, step: int) -> None:
        self.recent_kl = (self.recent_kl + [metrics["kl"]])[-self.window :]
        mean_kl = sum(self.recent_kl) / len(self.recent_kl)
        if len(self.recent_kl) == self.window and mean_kl < -0.1:
            warn(
                f"step {step}: mean KL to the reference over the last {self.window} steps is negative ({mean_kl:.3f}). "
                "True sampling cannot produce that on average: check that generation and scoring use the same "
                "temperature/top_p, that dropout is off, and that nothing changed the policy between sampling and scoring"
            )
        if metrics["kl"] > self.config.kl.warn_above:
            warn(
                f"step {step}: KL to the reference is {metrics['kl']:.2f} nats per response (> kl.warn_above="
                f"{self.config.kl.warn_above}): the policy is drifting far (reward hacking?). Lower optim.policy_lr, "
                "raise kl.kl_coef, or use kl.controller=adaptive"
            )
        if metrics["empty_share"] > 0.5:
            warn(f"step {step}: {metrics['empty_share']:.0%} of the responses are empty (EOS first); the reward model scores empty text")


# -- the stage ---------------------------------------------------------------------------------
def run(config: PPOConfig) -> RunResult:
    seed = config.schedule.seed
    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
    if config.deepspeed:
        import deepspeed

        deepspeed.init_distributed()
    for model in (config.policy.name_or_path, config.reward_model):  # missing models fail before the run dir exists
        resolve_model_path(model)
    run_dir = create_run_dir(config)
    resume_from = find_resume_point(run_dir, config.output.resume)
    run_dir.write_config(to_yaml(config))
    run_dir.write_env([config.data.train] + ([config.data.test] if config.data.test else []))

    # models: policy (+ reference), reward scorer, critic
    scorer = load_scorer(config.reward_model)
    policy = build_policy(config)
    check_context(config, policy)
    critic_model = build_critic(config, policy, scorer)
    if is_main_process():
        print(describe(policy, critic_model))
    prompts = load_prompts(config.data.train, policy.tokenizer, config.rollout.max_prompt_length, config.data.columns, config.data.max_samples)
    gen = generation_settings(policy, config.rollout.max_new_tokens, config.rollout.temperature, config.rollout.top_p)
    actor = make_optimised(policy.model, config.optim.policy_lr, config, "policy")
    critic = make_optimised(critic_model, config.optim.critic_lr, config, "critic")
    loop = LoopState(
        step=0,
        kl_controller=make_kl_controller(config.kl),
        moments=RunningMoments(),
        sampler=PromptSampler(len(prompts), config.rollout.batch_size * world_size(), seed),
        shuffle=torch.Generator().manual_seed(seed + 1 + rank()),
    )
    if resume_from is not None:
        read_checkpoint(resume_from, actor, critic, loop, rank())
        run_dir.trim_metrics(loop.step)  # steps logged after the checkpoint are redone, not duplicated
        print(f"resumed from {resume_from} (step {loop.step})")
    gold = load_gold(find_world(config.data.train, config.eval.gold))

    logger = run_dir.metrics(tensorboard="tensorboard" in config.output.report_to)
    save_every = config.schedule.save_steps or config.schedule.steps
    bar = tqdm(range(loop.step + 1, config.schedule.steps + 1), desc="ppo", disable=not is_main_process(), initial=loop.step, total=config.schedule.steps)
    metrics: dict = {}
    check_health = HealthCheck(config)
    for step in bar:
        metrics, samples = ppo_step(config, policy, actor, critic, scorer, gold, prompts, loop, gen)
        loop.step = step
        check_health(metrics, step)
        # 7. log
        if step % config.schedule.logging_steps == 0 or step == config.schedule.steps:
            logger.log(step, metrics)
        if step % config.schedule.sample_steps == 0 and is_main_process():
            with (run_dir.path / "samples.jsonl").open("a") as handle:
                for row in samples[:4]:
                    handle.write(json.dumps({"step": step, **row}) + "\n")
        bar.set_postfix(rm=f"{metrics['rm_score']:.3f}", kl=f"{metrics['kl']:.3f}")
        # 8. checkpoint
        if step % save_every == 0 or step == config.schedule.steps:
            save_checkpoint(run_dir, actor, critic, loop, config)
    logger.close()
    return finish(config, run_dir, policy, scorer, gold, metrics)


def save_checkpoint(run_dir: RunDir, actor: Optimised, critic: Optimised, loop: LoopState, config: PPOConfig) -> None:
    if actor.engine is not None:  # DeepSpeed: a collective write of every rank's shards
        folder = run_dir.checkpoints_dir / f"step-{loop.step}"
        write_deepspeed_checkpoint(folder, actor, critic, loop, is_main_process(), rank())
        barrier()
        return
    run_dir.save_checkpoint(loop.step, lambda tmp: write_checkpoint(tmp, actor, critic, loop), keep=config.schedule.save_total_limit)


def finish(config: PPOConfig, run_dir: RunDir, policy: Policy, scorer, gold, last: dict) -> RunResult:
    """9. evaluate SFT vs PPO on held-out prompts, then final/, eval.json and report.md."""
    figures, samples = None, []
    if config.eval.enabled and config.data.test:
        eval_prompts = load_prompts(config.data.test, policy.tokenizer, config.rollout.max_prompt_length, config.data.columns, config.eval.max_prompts)
        settings = generation_settings(policy, config.rollout.max_new_tokens, config.eval.temperature, 1.0)
        figures, samples = compare_policies(policy, scorer, gold, eval_prompts, settings, config.rollout.batch_size, config.schedule.seed)
    final = run_dir.path / "final"
    with gathered_params(policy.model):
        if is_main_process():
            save_final(policy, final)
    barrier()
    result_metrics = {k: last[k] for k in ("rm_score", "kl", "kl_coef", "response_length") if k in last}
    if "gold_score" in last:
        result_metrics["gold_score"] = last["gold_score"]
    artifacts = {"final": final}
    if is_main_process():
        if figures is not None:
            run_dir.write_json("eval.json", figures)
            (run_dir.path / "eval_samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
            result_metrics.update({f"eval_sft_{k}": v for k, v in figures["sft"].items()})
            result_metrics.update({f"eval_ppo_{k}": v for k, v in figures["ppo"].items()})
            result_metrics.update({k: v for k, v in figures.items() if k.startswith("win_rate")})
            artifacts["eval"] = run_dir.path / "eval.json"
        artifacts["report"] = write_report(run_dir.path, figures, samples, {k: round(v, 4) if isinstance(v, float) else v for k, v in result_metrics.items()})
    return RunResult(run_dir.path, result_metrics, artifacts)
