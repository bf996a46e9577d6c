"""`align dpo`: the SFT model tuned on the same rankings the reward model learns from, with no
reward model and no sampling (DPO and TRL's other pairwise losses, or KTO).

run(config):
  1. check the input: the SFT model exists, the preference data give pairs (KTO: both labels);
  2. create the run dir (config.yaml, env.json, data_stats.json) and decide where to resume;
  3. load the SFT policy (a LoRA SFT run is merged first), set what trains; the reference is
     the SFT model (LoRA: the adapter disabled; full / partial: a frozen copy);
  4. train with TRL's DPOTrainer (KTOTrainer), checkpoints and metrics in the run dir;
  5. save final/ (a plain model, LoRA merged);
  6. rank 0: the implicit reward on held-out pairs (accuracy, tau, calibration, gold), then
     SFT vs tuned on held-out prompts (the same comparison PPO writes) -> eval.json, report.md.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from transformers import set_seed

from align.config.dpo import DPOConfig
from align.config.loader import to_yaml
from align.device import detect_device
from align.distributed import barrier, is_main_process, say
from align.dpo.data import dpo_rows, keep_by_weight, kto_rows, prompt_messages
from align.dpo.evaluate import ImplicitReward
from align.dpo.report import write_report
from align.errors import AlignInputError
from align.generation import chat_prompt_ids, settings_for
from align.models import is_peft_adapter, load_causal_lm, load_tokenizer, resolve_model_path
from align.peft_builders import apply_update_mode, describe_trainable
from align.ppo.evaluate import compare_policies, find_world, load_gold
from align.ppo.models import Policy, save_final
from align.ppo.prompts import TokenizedPrompt, load_prompts
from align.precision import runs_in_precision
from align.quiet import one_progress_bar
from align.reward.evaluate import evaluate_split
from align.reward.inputs import RewardData, annotator_weights, prepare_data
from align.reward.text import prompt_text
from align.rundir import FINAL_DIR, RunDir, RunResult, atomic_write_text, read_metrics
from align.trainer_builders import release_deepspeed_globals, training_arguments_kwargs
from align.trainer_callbacks import check_early_stopping, resume_checkpoint, run_dir_callbacks


@runs_in_precision
def run(config: DPOConfig, callbacks: Sequence[Any] = ()) -> RunResult:
    """Train, save final/, evaluate. `callbacks`: extra HF TrainerCallbacks (tests crash runs with them)."""
    # 1. input checks before any run dir exists
    check_early_stopping(config)
    resolve_model_path(config.model.name_or_path)
    if config.reward_model:
        resolve_model_path(config.reward_model)
    data = prepare_data(config) if config.simulate is None else None
    rows = training_rows(config, data) if data is not None else None

    # 2. the run dir (simulated demo rankings are written into it, then read like an export)
    run_dir = RunDir.create(config.output.output_dir, "dpo", config.output.overwrite, config.output.resume)
    resume_from = resume_checkpoint(run_dir, config.output.resume)
    data = data or prepare_data(config, run_dir.file("data"))
    rows = rows or training_rows(config, data)
    for warning in data.warnings:
        say(f"warning: {warning}")
    run_dir.write_config(to_yaml(config))
    run_dir.write_env(data.files)
    run_dir.write_json("data_stats.json", {**data.summary(), "train_examples": len(rows["train"])})

    # 3. the policy and its reference
    set_seed(config.training.seed)
    device = detect_device()
    tokenizer = load_tokenizer(config.model)
    model = load_causal_lm(config.model, device)
    if is_peft_adapter(resolve_model_path(config.model.name_or_path)):
        model = model.merge_and_unload()  # the SFT policy as plain weights: the reference is exactly it
    reference = None if config.update.mode == "lora" else copy.deepcopy(model).requires_grad_(False).eval()
    model = apply_update_mode(model, config.update)
    say(f"align dpo ({config.loss}, beta {config.beta}), update mode {config.update.mode}: {describe_trainable(model)}")

    # 4. train
    trainer = build_trainer(config, model, reference, tokenizer, rows, run_dir, callbacks)
    train_result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    policy = Policy(
        trainer.accelerator.unwrap_model(trainer.model), reference, tokenizer, str(config.model.name_or_path)
    )

    # 5. final/ (every rank joins; rank 0 writes)
    final_dir = run_dir.file(FINAL_DIR)
    if is_main_process():
        save_final(policy, final_dir)
    barrier()
    del trainer
    release_deepspeed_globals()
    if not is_main_process():
        return RunResult(run_dir.path)

    # 6. evaluate
    summary: dict[str, Any] = {
        "loss": config.loss,
        "beta": config.beta,
        "update_mode": config.update.mode,
        "train_examples": len(rows["train"]),
        "train_loss": float(train_result.training_loss),
        "global_steps": int(train_result.global_step),
        "train_seconds": float(train_result.metrics.get("train_runtime", 0.0)),
    }
    figures: dict[str, Any] = {}
    samples: list[dict] = []
    if config.eval.enabled:
        policy.model.eval()
        figures["pairs"] = held_out_pairs(config, data, policy)
        figures["comparison"], samples = comparison(config, data, policy)
        summary.update(headline(figures))
    run_dir.write_json("eval.json", {"summary": summary, **figures})
    atomic_write_text(run_dir.path / "eval_samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
    report = write_report(run_dir.path, summary, figures, samples, read_metrics(run_dir.file("metrics.jsonl")))
    metrics = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
    return RunResult(run_dir.path, metrics, {"final": final_dir, "eval": run_dir.path / "eval.json", "report": report})


def training_rows(config: DPOConfig, data: RewardData) -> dict[str, list[dict]]:
    """TRL rows per split: preference pairs for DPO, labelled single responses for KTO; with
    annotator_weights: reliability, train pairs kept in proportion to their annotator's weight."""
    reliability = annotator_weights(config, data)
    out = {}
    for name in ("train", "validation"):
        split = data.get(name)
        if split is None or not split.pairs:
            continue
        pairs = split.pairs
        if reliability and name == "train":
            pairs = keep_by_weight(pairs, {n: r["weight"] for n, r in reliability.items()}, config.training.seed)
        out[name] = kto_rows(split, config.kto.rule) if config.loss == "kto" else dpo_rows(pairs)
    if not out.get("train"):
        raise AlignInputError(f"no training examples in {data.splits['train'].source}")
    return out


def build_trainer(config: DPOConfig, model, reference, tokenizer, rows: dict, run_dir: RunDir, extra: Sequence[Any]):
    from datasets import Dataset

    dtype = next(p for p in model.parameters()).dtype
    common = training_arguments_kwargs(
        config.training, run_dir.checkpoints_dir, dtype, config.deepspeed, has_eval="validation" in rows
    )
    if config.loss == "kto":
        from trl import KTOConfig, KTOTrainer

        args = KTOConfig(
            **common,
            beta=config.beta,
            max_length=config.data.max_length,
            dataset_num_proc=None,
            desirable_weight=config.kto.desirable_weight,
            undesirable_weight=config.kto.undesirable_weight,
        )
        trainer_class = KTOTrainer
    else:
        from trl import DPOConfig as TRLDPOConfig
        from trl import DPOTrainer

        args = TRLDPOConfig(
            **common,
            beta=config.beta,
            loss_type=[config.trl_loss],
            label_smoothing=config.label_smoothing,
            max_length=config.data.max_length,
            dataset_num_proc=None,
        )
        trainer_class = DPOTrainer
    trainer = trainer_class(
        model=model,
        ref_model=reference,
        args=args,
        train_dataset=Dataset.from_list(rows["train"]),
        eval_dataset=Dataset.from_list(rows["validation"]) if "validation" in rows else None,
        processing_class=tokenizer,
        callbacks=run_dir_callbacks(config, run_dir, extra),
    )
    one_progress_bar(trainer)
    return trainer


def held_out_pairs(config: DPOConfig, data: RewardData, policy: Policy) -> dict[str, Any]:
    """The implicit reward on the held-out splits, judged like a reward model."""
    reward = ImplicitReward(policy, config.beta, config.eval.batch_size)
    gold_score = data.gold.score if data.gold is not None else None
    out = {}
    for name in ("validation", "test"):
        split = data.get(name)
        if split is not None and split.pairs:
            out[name], _ = evaluate_split(
                reward.score, split.pairs, split.rankings, config.eval.calibration_bins, gold_score
            )
    return out


def comparison(config: DPOConfig, data: RewardData, policy: Policy) -> tuple[dict, list[dict]]:
    """SFT vs the tuned policy on held-out prompts: RM score (if a reward model is given), gold, KL, win rates."""
    prompts = held_out_prompts(config, data, policy.tokenizer)
    if not prompts:
        return {}, []
    scorer = None
    if config.reward_model:
        from align.ppo.scoring import load_scorer

        scorer = load_scorer(config.reward_model)
    source = config.eval.prompts or config.data.test or config.data.train
    # 'none' means no gold rule; otherwise the prompts' world, else the world the data was judged by
    gold = None if config.eval.gold == "none" else load_gold(find_world(source, config.eval.gold)) or data.gold
    settings = settings_for(
        policy.tokenizer, policy.model, config.eval.max_new_tokens, temperature=config.eval.temperature
    )
    return compare_policies(
        policy, scorer, gold, prompts, settings, config.eval.batch_size, config.training.seed, name="dpo"
    )


def held_out_prompts(config: DPOConfig, data: RewardData, tokenizer) -> list[TokenizedPrompt]:
    if config.eval.prompts:
        return load_prompts(config.eval.prompts, tokenizer, 10**6, config.data.columns, config.eval.max_prompts)
    split = data.get("test") or data.get("validation")
    if split is None:
        return []
    seen, prompts = set(), []
    for pair in split.pairs:
        if pair.group in seen:
            continue
        seen.add(pair.group)
        ids = chat_prompt_ids(tokenizer, prompt_messages(pair.prompt))
        prompts.append(TokenizedPrompt(prompt_text(pair.prompt), ids))
    return prompts[: config.eval.max_prompts]


def headline(figures: dict[str, Any]) -> dict[str, float]:
    out = {}
    for split, fig in figures.get("pairs", {}).items():
        for key in ("accuracy", "kendall_tau", "model_gold_accuracy"):
            if key in fig:
                out[f"{split}_implicit_{key}"] = float(fig[key])
    comp = figures.get("comparison", {})
    for who in ("sft", "dpo"):
        for key, value in comp.get(who, {}).items():
            out[f"eval_{who}_{key}"] = float(value)
    out.update({k: float(v) for k, v in comp.items() if k.startswith("win_rate")})
    return out
