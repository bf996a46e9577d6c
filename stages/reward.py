"""`align reward`: a Bradley-Terry reward model from rankings or pairs, under the run-dir contract.

run(config):
  1. check the input: update mode, data (rankings -> pairs per split, counts), backbone;
  2. create the run dir (config.yaml, env.json, data_stats.json) and decide where to resume;
  3. rank 0: score held-out data with the untrained model (the baseline);
  4. set what trains (full / partial / LoRA; the head always) and train with TRL's RewardTrainer;
  5. save final/ (full model, LoRA merged, + tokenizer + reward_model.json with the
     training-set reward mean/std for normalisation);
  6. rank 0: reload final/ through RewardScorer and evaluate -> eval.json, report.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from align.config.loader import to_yaml
from align.config.reward import RewardConfig
from align.device import detect_device
from align.distributed import barrier, is_main_process, say, world_size
from align.errors import AlignInputError
from align.peft_builders import apply_update_mode, describe_trainable
from align.precision import runs_in_precision
from align.reward.evaluate import evaluate_split
from align.reward.inputs import RewardData, annotator_weights, listwise_rankings, prepare_data
from align.reward.model import is_peft, load_backbone, resolve_backbone, save_reward_model, unwrap
from align.reward.report import write_report
from align.reward.scorer import RewardScorer
from align.reward.text import RewardMeta
from align.reward.train import TokenizedPairs, add_bootstrap, build_trainer, tokenize_pairs, tokenize_rankings
from align.rundir import FINAL_DIR, RunDir, RunResult, read_metrics
from align.trainer_callbacks import (
    check_early_stopping,
    early_stopping_summary,
    resume_checkpoint,
    run_dir_callbacks,
)

SUPPORTED_MODES = ("full", "partial", "lora", "adapter", "feature_extraction")
MAX_NORM_SAMPLES = 4000  # training responses scored for the normalisation mean/std


def training_inputs(config: RewardConfig, data: RewardData) -> tuple[dict[str, list], dict[str, dict] | None]:
    """What training needs beyond the pairs: whole rankings for loss plackett_luce ({} otherwise)
    and each annotator's reliability and weight (None unless annotator_weights: reliability)."""
    listwise = listwise_rankings(config, data) if config.loss == "plackett_luce" else {}
    return listwise, annotator_weights(config, data)


@runs_in_precision
def run(config: RewardConfig, callbacks: Sequence[Any] = ()) -> RunResult:
    """Train, save final/, evaluate. `callbacks`: extra HF TrainerCallbacks (tests crash runs with them)."""
    # 1. input checks that need no model
    check_config(config)
    resolve_backbone(config.model.name_or_path)  # a missing model fails before the run dir exists
    device = detect_device()

    data = prepare_data(config) if config.simulate is None else None  # bad data: no run dir is created
    # pairs trained listwise, reliability weights of a single annotator...: refused before the run dir
    learned_from = training_inputs(config, data) if data is not None else None

    # 2. the run dir (simulated demo rankings are written into it, then read like an export)
    run_dir = create_run_dir(config)

    resume_from = resume_checkpoint(run_dir, config.output.resume)
    data = data or prepare_data(config, run_dir.file("data"))
    listwise, reliability = learned_from or training_inputs(config, data)
    for warning in data.warnings:
        say(f"warning: {warning}")
    from transformers import set_seed

    set_seed(config.training.seed)  # the new head's initialisation, hence the baseline, is reproducible
    model, tokenizer, meta = load_backbone(config.model, device, heads=config.heads)
    meta.max_length = min(meta.max_length, config.data.max_length)
    meta.normalize = config.normalize
    weights = {name: r["weight"] for name, r in reliability.items()} if reliability else None
    if reliability:
        say("annotator weights (reliability): " + ", ".join(f"{n} {r['weight']:.2f}" for n, r in reliability.items()))
    tokenized = {
        name: tokenize_pairs(split.pairs, tokenizer, meta, weights if name == "train" else None)
        for name, split in data.splits.items()
    }
    stats = {name: {**data.summary()[name], **tokenized[name].summary()} for name in data.splits}
    run_dir.write_config(to_yaml(config))
    run_dir.write_env(data.files)
    run_dir.write_json("data_stats.json", stats)
    say(data_line(stats))

    # 3. the untrained baseline (head freshly initialised with the training seed)
    results: dict[str, dict] = {}
    rewards: dict[str, tuple] = {}
    if config.eval.compare_untrained and is_main_process():
        say("evaluating the untrained model (baseline)")
        scorer = RewardScorer.from_model(model, tokenizer, meta, config.eval.batch_size)
        results["untrained"], rewards["untrained"] = evaluate_all(scorer, data, config)
    barrier()

    # 4. train
    model = apply_update_mode(model, config.update, "SEQ_CLS")
    say(f"update mode {config.update.mode}: {describe_trainable(model)}")
    trained_on = tokenized
    if config.loss == "plackett_luce":
        trained_on = {
            name: tokenize_rankings(r, tokenizer, meta, weights if name == "train" else None)
            for name, r in listwise.items()
        }
    add_bootstrap(trained_on["train"], config.heads, config.training.seed)  # an ensemble's heads each resample
    trainer = build_trainer(
        config,
        model,
        tokenizer,
        trained_on["train"],
        trained_on.get("validation"),
        run_dir_callbacks(config, run_dir, callbacks),
        run_dir.checkpoints_dir,
    )
    train_result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

    # 5. save final/ (all ranks), then rank 0 adds the normalisation statistics
    final_dir = save_final(trainer, tokenizer, meta, run_dir)
    stopped = early_stopping_summary(trainer)
    del trainer
    if not is_main_process():
        return RunResult(run_dir.path)
    scorer = RewardScorer(
        final_dir, batch_size=config.eval.batch_size, normalize=False
    )  # reloading proves final/ loads
    add_normalisation(scorer, data)

    # 6. evaluate the saved model
    say("evaluating the trained model")
    results["trained"], rewards["trained"] = evaluate_all(scorer, data, config)
    summary = headline(config, data, tokenized, train_result, results, scorer.meta) | stopped
    if reliability:
        summary["annotator_weights"] = reliability
    run_dir.write_json("eval.json", {"summary": summary, "models": results, "data": stats})
    report = write_report(
        run_dir.path,
        summary,
        results,
        {k: v for k, v in rewards.items() if v is not None},
        read_metrics(run_dir.file("metrics.jsonl")),
        stats,
    )
    return RunResult(
        run_dir.path,
        {k: v for k, v in summary.items() if isinstance(v, (int, float))},
        {"final": final_dir, "report": report},
    )


def create_run_dir(config: RewardConfig) -> RunDir:
    """Rank 0 checks and creates the run dir (RunDir.create); the process group is started
    here, early, so that RunDir.create can hand rank 0's path (even a timestamped one) to every rank."""
    if world_size() > 1 and not torch.distributed.is_initialized():
        if config.deepspeed:
            import deepspeed

            deepspeed.init_distributed()
        else:
            torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return RunDir.create(config.output.output_dir, "reward", config.output.overwrite, config.output.resume)


def check_config(config: RewardConfig) -> None:
    if config.update.mode not in SUPPORTED_MODES:
        raise AlignInputError(
            f"update.mode = {config.update.mode!r} is not supported for reward models; use one of {', '.join(SUPPORTED_MODES)}"
        )
    check_early_stopping(config)
    if config.deepspeed and config.update.mode == "lora":
        import json

        stage = json.loads(Path(config.deepspeed).read_text()).get("zero_optimization", {}).get("stage", 0)
        if stage == 3:
            raise AlignInputError(
                "LoRA reward models are merged on rank 0 at the end, which ZeRO-3 does not allow; use zero2 or update.mode=full"
            )


def data_line(stats: dict[str, dict]) -> str:
    return "data: " + "; ".join(
        f"{name} {s['pairs']} pairs ({s['truncated_sequences']} truncated)" for name, s in stats.items()
    )


def evaluate_all(scorer: RewardScorer, data: RewardData, config: RewardConfig) -> tuple[dict, tuple | None]:
    """Figures per held-out split; returns the test (else validation) rewards for the histogram."""
    figures, raw = {}, None
    gold_score = data.gold.score if data.gold is not None else None
    for name in ("validation", "test"):
        split = data.get(name)
        if split is None or not split.pairs:
            continue
        figures[name], raw = evaluate_split(
            scorer.score, split.pairs, split.rankings, config.eval.calibration_bins, gold_score
        )
    return figures, raw


def save_final(trainer, tokenizer, meta: RewardMeta, run_dir: RunDir) -> Path:
    """final/: a full sequence-classification model (LoRA merged) + tokenizer + reward_model.json."""
    final_dir = run_dir.file(FINAL_DIR)
    model = unwrap(trainer.model)
    if not is_peft(model):
        trainer.save_model(str(final_dir))  # every rank joins (ZeRO-3 gathers the weights)
    if is_main_process():
        if is_peft(model):
            save_reward_model(model, tokenizer, meta, final_dir)
        else:
            model.config.pad_token_id = tokenizer.pad_token_id
            model.config.save_pretrained(final_dir)
            tokenizer.save_pretrained(final_dir)
            meta.save(final_dir)
    barrier()
    return final_dir


def add_normalisation(scorer: RewardScorer, data: RewardData) -> None:
    """Score the training responses with the saved model; store their mean/std in reward_model.json."""
    scorer.meta.reward_mean, scorer.meta.reward_std = reward_stats(scorer, data)
    scorer.meta.save(scorer.path)


def reward_stats(scorer: RewardScorer, data: RewardData) -> tuple[float, float]:
    """Mean and std of the rewards of (up to MAX_NORM_SAMPLES) distinct training responses."""
    seen: dict[tuple[str, str], Any] = {}
    for pair in data.splits["train"].pairs:
        for text in (pair.chosen, pair.rejected):
            seen.setdefault((pair.group, text), pair.prompt)
        if len(seen) >= MAX_NORM_SAMPLES:
            break
    keys = list(seen)
    rewards = scorer.score([seen[k] for k in keys], [k[1] for k in keys])
    std = rewards.std().item() if len(rewards) > 1 else 1.0
    return rewards.mean().item(), max(std, 1e-6)


def headline(
    config: RewardConfig,
    data: RewardData,
    tokenized: dict[str, TokenizedPairs],
    train_result,
    results: dict,
    meta: RewardMeta,
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "backbone": config.model.name_or_path,
        "input_format": meta.input_format,
        "update_mode": config.update.mode,
        "heads": config.heads,
        "train_pairs": len(tokenized["train"]),
        "train_loss": float(train_result.training_loss),
        "global_steps": int(train_result.global_step),
        "train_seconds": float(train_result.metrics.get("train_runtime", 0.0)),
        "reward_mean": meta.reward_mean,
        "reward_std": meta.reward_std,
    }
    for model, splits in results.items():
        for split, fig in splits.items():
            for key in ("accuracy", "kendall_tau", "model_gold_accuracy", "annotator_gold_agreement"):
                if key in fig and not (model == "untrained" and key == "annotator_gold_agreement"):
                    name = key if key == "annotator_gold_agreement" else f"{model}_{key}"
                    summary[f"{split}_{name}"] = float(fig[key])
            if model == "trained":
                summary[f"{split}_ece"] = float(fig["calibration"]["ece"])
    return summary
