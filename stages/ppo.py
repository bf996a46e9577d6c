"""`align ppo`: PPO of the policy against a reward model with a KL penalty.

One step = 1. sample prompts, 2. generate, 3. score, 4. KL-shaped rewards, 5. advantages
(2-5: align.ppo.experience.make_experience), 6. PPO epochs over shuffled minibatches,
7. log, 8. checkpoint; after the last step, 9. compare SFT and PPO on held-out prompts and
write final/, eval.json and report.md. The math lives in align/rl/, the model/file plumbing
in align/ppo/.
"""

from __future__ import annotations

import json
import random

import numpy as np
import torch
from tqdm.auto import tqdm

from align.config.loader import to_yaml
from align.config.ppo import PPOConfig
from align.data.io import read_records
from align.distributed import barrier, is_main_process, rank, say, world_size
from align.generation import gathered_params, settings_for
from align.models import resolve_model_path
from align.ppo.checkpoint import (
    LoopState,
    find_resume_point,
    read_checkpoint,
    write_checkpoint,
    write_deepspeed_checkpoint,
)
from align.ppo.engines import Optimised, make_optimised
from align.ppo.evaluate import compare_policies, find_world, heldout_checks, load_gold
from align.ppo.experience import (
    complete_on_policy,
    episode_settings,
    make_experience,
    sample_cells,
    sample_rows,
    step_metrics,
    timed,
)
from align.ppo.health import HealthCheck, setup_advice
from align.ppo.models import Policy, build_critic, build_policy, check_context, describe, save_final
from align.ppo.prompts import PromptSampler, TokenizedPrompt, load_prompts
from align.ppo.report import write_report
from align.ppo.scoring import RewardSources, build_sources, check_rule_fields, load_scorer
from align.ppo.update import ppo_update
from align.precision import runs_in_precision
from align.rl.kl_controller import kl_controller_from
from align.rl.rewards import RunningMoments
from align.rundir import FINAL_DIR, RunDir, RunResult, append_jsonl, atomic_write_text
from align.tools.environment import environment_factory
from align.tools.episodes import check_tool_template


def ppo_step(
    config: PPOConfig,
    policy: Policy,
    actor: Optimised,
    critic: Optimised | None,
    sources: RewardSources,
    gold,
    prompts: list[TokenizedPrompt],
    loop: LoopState,
    gen,
    environment=None,
) -> tuple[dict, list[dict]]:
    """Steps 1-6 of the loop; returns (metrics, samples for the table). With an `environment`
    (a factory of fresh instances), each sample is a multi-turn episode with its tools."""
    global_batch = loop.sampler.next_batch()  # 1. sample prompts (each rank its own slice of the global batch)
    batch = [prompts[i] for i in global_batch[rank() :: world_size()]]
    times: dict[str, float] = {}
    kl_coef = loop.kl_controller.value
    # 2-5. generate, score, KL-shaped rewards, advantages
    exp = make_experience(
        config, policy, actor, critic, sources, gold, batch, gen, loop.moments, kl_coef, times, environment
    )
    with timed(times, "time_train"):  # 6. PPO epochs (the KL term joins the loss with kl.apply_to = loss)
        kl_in_loss = kl_coef if config.kl.apply_to == "loss" else 0.0
        stats = ppo_update(actor, critic, exp, config.ppo, gen.temperature, loop.shuffle, kl_in_loss)
    complete_on_policy(exp, config.kl.estimator)
    records = [p.record for p in batch for _ in range(gen.samples_per_prompt)]
    metrics = {**step_metrics(exp, kl_coef, config.kl.estimator, sources.labels), **stats, **times}
    metrics.update(sources.rule_details(exp.responses, records))
    episodes = len(global_batch) * gen.samples_per_prompt
    loop.kl_controller.update(metrics["kl"], episodes)  # the coefficient for the next step
    return metrics, sample_rows(exp)


# -- the stage ---------------------------------------------------------------------------------
@runs_in_precision
def run(config: PPOConfig) -> RunResult:
    seed = config.schedule.seed
    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
    if config.deepspeed:
        import deepspeed

        deepspeed.init_distributed()
    for model in (config.policy.name_or_path, config.reward_model):  # missing models fail before the run dir exists
        if model is not None:
            resolve_model_path(model)
    # reward sources: models loaded, rules built, user functions imported and checked (exit 2 before any work)
    sources = build_sources(config, load_scorer)
    environment = environment_factory(config.tools.env, config.tools.options) if config.tools.env else None
    for part in [config.data.train] + ([config.data.test] if config.data.test else []):
        check_rule_fields(config, read_records(part, columns=config.data.columns), part)
    # rank 0 creates (or checks) the run dir; the other ranks get the same path
    run_dir = RunDir.create(config.output.output_dir, "ppo", config.output.overwrite, config.output.resume)
    resume_from = find_resume_point(run_dir, config.output.resume)
    run_dir.write_config(to_yaml(config))
    run_dir.write_env([config.data.train] + ([config.data.test] if config.data.test else []))

    # models: policy (+ reference), critic
    policy = build_policy(config)
    check_context(config, policy)
    if environment is not None:
        check_tool_template(policy.tokenizer, config.policy.name_or_path)
    critic_model = build_critic(config, policy, sources.scorer) if config.uses_critic else None  # grpo / rloo: none
    say(describe(policy, critic_model))
    prompts = load_prompts(
        config.data.train,
        policy.tokenizer,
        config.rollout.max_prompt_length,
        config.data.columns,
        config.data.max_samples,
        config.data.format,
    )
    gen = settings_for(
        policy.tokenizer,
        policy.model,
        config.rollout.max_new_tokens,
        temperature=config.rollout.temperature,
        top_p=config.rollout.top_p,
        samples_per_prompt=config.rollout.samples_per_prompt,
    )
    actor = make_optimised(policy.model, config.optim.policy_lr, config, "policy")
    critic = (
        make_optimised(critic_model, config.optim.critic_lr, config, "critic") if critic_model is not None else None
    )
    loop = LoopState(
        step=0,
        kl_controller=kl_controller_from(config.kl),
        moments=RunningMoments(),
        sampler=PromptSampler(len(prompts), config.rollout.batch_size * world_size(), seed),
        shuffle=torch.Generator().manual_seed(seed + 1 + rank()),
    )
    if resume_from is not None:
        read_checkpoint(resume_from, actor, critic, loop, rank())
        run_dir.trim_metrics(loop.step)  # steps logged after the checkpoint are redone, not duplicated
        say(f"resumed from {resume_from} (step {loop.step})")
    gold = load_gold(find_world(config.data.train, config.eval.gold))

    logger = run_dir.metrics(config)
    save_every = config.schedule.save_steps or config.schedule.steps
    bar = tqdm(
        range(loop.step + 1, config.schedule.steps + 1),
        desc="ppo",
        disable=not is_main_process(),
        initial=loop.step,
        total=config.schedule.steps,
    )
    metrics: dict = {}
    check_health = HealthCheck(config)
    for advice in setup_advice(config):
        say(advice, warning=True)
    heldout = heldout_prompts(config, policy) if sources.checks else []
    for step in bar:
        metrics, samples = ppo_step(config, policy, actor, critic, sources, gold, prompts, loop, gen, environment)
        loop.step = step
        check_health(metrics, step)
        measured = bool(heldout and config.schedule.accuracy_steps and step % config.schedule.accuracy_steps == 0)
        if measured:
            metrics.update(task_accuracy(config, policy, sources, heldout, environment=environment))
        # 7. log (a step that measured held-out accuracy is logged whatever logging_steps says)
        if measured or step % config.schedule.logging_steps == 0 or step == config.schedule.steps:
            logger.log(step, metrics)
        if step % config.schedule.sample_steps == 0 and is_main_process():
            append_jsonl(run_dir.path / "samples.jsonl", [{"step": step, **row} for row in samples[:4]])
            # the whole batch for the trackers' table views (TRL logs its completions the same way)
            logger.log_table("samples", step, [{"step": step, **sample_cells(row)} for row in samples])
        bar.set_postfix(rm=f"{metrics['rm_score']:.3f}", kl=f"{metrics['kl']:.3f}")
        # 8. checkpoint
        if step % save_every == 0 or step == config.schedule.steps:
            save_checkpoint(run_dir, actor, critic, loop, config)
    logger.close()
    return finish(config, run_dir, policy, sources, gold, metrics, heldout, environment)


def heldout_prompts(config: PPOConfig, policy: Policy) -> list[TokenizedPrompt]:
    """The held-out prompts (data.test): the final comparison's, and those the rule and function
    sources measure task accuracy on."""
    if not config.data.test:
        return []
    return load_prompts(
        config.data.test,
        policy.tokenizer,
        config.rollout.max_prompt_length,
        config.data.columns,
        config.eval.max_prompts,
        config.data.format,
    )


def task_accuracy(
    config: PPOConfig, policy: Policy, sources: RewardSources, prompts, model=None, environment=None
) -> dict:
    """heldout/<source>: the checks on greedy answers of `model` (default: the policy being
    trained); episodes with the environment's tools when there is one."""
    greedy = settings_for(policy.tokenizer, policy.model, config.rollout.max_new_tokens, do_sample=False)
    episode = episode_settings(config, policy.tokenizer) if environment is not None else None
    with gathered_params(policy.model):
        found = heldout_checks(
            model or policy.model,
            policy.tokenizer,
            sources,
            prompts,
            greedy,
            config.eval.batch_size,
            environment,
            episode,
        )
    return {f"heldout/{label}": value for label, value in found.items()}


def save_checkpoint(
    run_dir: RunDir, actor: Optimised, critic: Optimised | None, loop: LoopState, config: PPOConfig
) -> None:
    if actor.engine is not None:  # DeepSpeed: a collective write of every rank's shards
        folder = run_dir.checkpoints_dir / f"step-{loop.step}"
        write_deepspeed_checkpoint(folder, actor, critic, loop, is_main_process(), rank())
        barrier()
        return
    run_dir.save_checkpoint(
        loop.step, lambda tmp: write_checkpoint(tmp, actor, critic, loop), keep=config.schedule.save_total_limit
    )


def comparison_keys(heldout: dict[str, float]) -> dict[str, float]:
    """heldout/<source> -> accuracy_<source>; heldout/tool/<x> -> tool_<x> (tool use per episode)."""
    named = {}
    for key, value in heldout.items():
        name = key.removeprefix("heldout/")
        named[name.replace("/", "_") if name.startswith("tool/") else f"accuracy_{name}"] = value
    return named


def finish(
    config: PPOConfig,
    run_dir: RunDir,
    policy: Policy,
    sources: RewardSources,
    gold,
    last: dict,
    heldout: list,
    environment=None,
) -> RunResult:
    """9. evaluate SFT vs PPO on held-out prompts, then final/, eval.json and report.md. With an
    environment the comparison is the checks on episodes with its tools (sampled single answers
    would not be what the policy was trained to do)."""
    figures, samples = None, []
    scorer = sources.scorer
    if config.eval.enabled and config.data.test:
        if environment is None:
            eval_prompts = heldout_prompts(config, policy)
            settings = settings_for(
                policy.tokenizer, policy.model, config.rollout.max_new_tokens, temperature=config.eval.temperature
            )
            figures, samples = compare_policies(
                policy,
                scorer,
                gold,
                eval_prompts,
                settings,
                config.eval.batch_size,
                config.schedule.seed,
                config.method,
            )
        else:
            figures = {"prompts": len(heldout), "sft": {}, config.method: {}}
        if heldout:  # task accuracy of the rules / functions, greedy, before and after
            with policy.reference() as reference:
                before = task_accuracy(config, policy, sources, heldout, model=reference, environment=environment)
            after = task_accuracy(config, policy, sources, heldout, environment=environment)
            figures["sft"].update(comparison_keys(before))
            figures[config.method].update(comparison_keys(after))
    final = run_dir.path / FINAL_DIR
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
            atomic_write_text(run_dir.path / "eval_samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
            result_metrics.update({f"eval_sft_{k}": v for k, v in figures["sft"].items()})
            result_metrics.update({f"eval_{config.method}_{k}": v for k, v in figures[config.method].items()})
            result_metrics.update({k: v for k, v in figures.items() if k.startswith("win_rate")})
            artifacts["eval"] = run_dir.path / "eval.json"
        rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in result_metrics.items()}
        artifacts["report"] = write_report(run_dir.path, figures, samples, rounded, config.method)
    return RunResult(run_dir.path, result_metrics, artifacts)
