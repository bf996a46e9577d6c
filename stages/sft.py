"""`align sft`: instruction fine-tuning with TRL's SFTTrainer, under the run-dir contract.

run(config):
  1. check what can be checked before any work: update mode vs device, tokenizer, data, model;
  2. create the run dir (config.yaml, env.json) and decide where to resume from;
  3. set what trains (full / partial / LoRA / QLoRA / prompt / prefix) and print the counts;
  4. train (checkpoints/step-N, metrics.jsonl, early stopping) and save final/;
  5. rank 0: evaluate base and tuned side by side -> eval.json + report.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import set_seed

from align.adapters import save_adapters
from align.config.common import ModelConfig
from align.config.loader import to_yaml
from align.config.sft import SFTConfig
from align.device import detect_device, resolve_dtype
from align.distributed import barrier, check_world, is_main_process, say
from align.distributed import finish as finish_distributed
from align.models import count_parameters, load_causal_lm, load_tokenizer, resolve_model_path
from align.peft_builders import (
    apply_update_mode,
    check_sequence_fits,
    check_update_supported,
    describe_trainable,
    quantization_kwargs,
)
from align.precision import runs_in_precision
from align.quiet import one_progress_bar
from align.rundir import FINAL_DIR, RunDir, RunResult, read_metrics
from align.sft.evaluate import evaluate_model, forgetting_ratio
from align.sft.export import merge_adapter, write_final_info
from align.sft.inputs import SFTData, load_sft_data
from align.sft.report import write_report
from align.trainer_builders import release_deepspeed_globals, sft_arguments
from align.trainer_callbacks import check_early_stopping, early_stopping_summary, resume_checkpoint, run_dir_callbacks


@runs_in_precision
def run(config: SFTConfig, callbacks: Sequence[Any] = ()) -> RunResult:
    """Train, save final/, evaluate. `callbacks` are extra HF TrainerCallbacks (tests use them to crash mid-run)."""
    # 1. everything that can be wrong with the input, before any work
    device = detect_device()
    check_update_supported(config.update, device)
    check_early_stopping(config)
    tokenizer = load_tokenizer(config.model)
    data = load_sft_data(config, tokenizer)
    model = load_model(config, device)
    check_sequence_fits(model, config.update, config.data.max_length)

    # 2. the run dir
    run_dir = RunDir.create(config.output.output_dir, "sft", config.output.overwrite, config.output.resume)
    resume_from = resume_checkpoint(run_dir, config.output.resume)
    run_dir.write_config(to_yaml(config))
    run_dir.write_env(data.files)
    run_dir.write_json("data_stats.json", data.length_summary())

    # 3. what trains (seeded: adapter initialisation draws from the global RNG)
    set_seed(config.training.seed)
    model = apply_update_mode(
        model, config.update, "CAUSAL_LM", tokenizer_path=resolve_model_path(config.model.name_or_path)
    )
    say(f"update mode {config.update.mode}: {describe_trainable(model)}")
    trainable_parameters, total_parameters = count_parameters(model)

    # 4. train and save
    trainer = build_trainer(config, model, tokenizer, data, run_dir, callbacks)
    check_world(trainer.accelerator.num_processes, trainer.accelerator.process_index)
    train_result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    final_dir = save_final(trainer, tokenizer, run_dir, config)
    stopped = early_stopping_summary(trainer)
    del trainer
    release_deepspeed_globals()
    finish_distributed()  # from here on rank 0 works alone
    if not is_main_process():
        return RunResult(run_dir.path)

    # 5. evaluate (rank 0 only: the saved final/ is reloaded, which also proves it loads)
    summary = {
        "update_mode": config.update.mode,
        "trainable_parameters": trainable_parameters,
        "total_parameters": total_parameters,
        "train_loss": float(train_result.training_loss),
        "global_steps": int(train_result.global_step),
        "train_examples": len(data.train.input_ids),
        "train_tokens": data.train.num_tokens,
        "train_seconds": float(train_result.metrics.get("train_runtime", 0.0)),
        "too_long_train": data.train.lengths.too_long,
        "dropped_train": data.train.lengths.dropped,
        "truncated_train": data.train.lengths.truncated,
    }
    summary.update(stopped)
    artifacts = {"final": final_dir}
    if config.merge_lora and config.update.mode in ("lora", "qlora"):
        artifacts["merged"] = merge_adapter(final_dir)
    results = evaluate_run(config, data, final_dir, device) if config.eval.enabled else {}
    summary.update(headline(results))
    run_dir.write_json(
        "eval.json",
        {"summary": summary, "models": {k: v["figures"] for k, v in results.items()}, "data": data.length_summary()},
    )
    samples = sample_rows(data, results, config.eval.samples_in_report)
    artifacts["report"] = write_report(
        run_dir.path,
        summary,
        {k: v["figures"] for k, v in results.items()},
        samples,
        read_metrics(run_dir.file("metrics.jsonl")),
    )
    return RunResult(run_dir.path, {k: v for k, v in summary.items() if isinstance(v, (int, float))}, artifacts)


def load_model(config: SFTConfig, device):
    """The base model; QLoRA loads it in 4 bits (CUDA only, checked before)."""
    dtype = resolve_dtype(config.model.dtype, device)
    extra = quantization_kwargs(config.update, dtype)
    if not extra:
        return load_causal_lm(config.model, device)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        resolve_model_path(config.model.name_or_path, dtype), dtype=dtype, **extra
    )


def build_trainer(config: SFTConfig, model, tokenizer, data: SFTData, run_dir: RunDir, extra_callbacks: Sequence[Any]):
    from align.sft.trainer import AlignSFTTrainer

    dtype = next(p for p in model.parameters()).dtype
    args = sft_arguments(config, run_dir.checkpoints_dir, dtype, has_eval=data.validation is not None)
    trainer = AlignSFTTrainer(
        model=model,
        args=args,
        train_dataset=data.train.to_dataset(),
        eval_dataset=data.validation.to_dataset() if data.validation is not None else None,
        processing_class=tokenizer,
        callbacks=run_dir_callbacks(config, run_dir, extra_callbacks),
        group_by_length=config.group_by_length,
    )
    one_progress_bar(trainer)
    return trainer


def save_final(trainer, tokenizer, run_dir: RunDir, config: SFTConfig) -> Path:
    """final/: the adapter (+ base ref) or the full model, plus tokenizer; every rank joins (ZeRO-3 gathers)."""
    final_dir = run_dir.file(FINAL_DIR)
    if config.update.mode == "adapter":  # the adapters alone + their base's path, like a PEFT adapter
        state = trainer.accelerator.get_state_dict(trainer.model)  # every rank joins (ZeRO-3 gathers)
        if is_main_process():
            model = trainer.accelerator.unwrap_model(trainer.model)
            save_adapters(model, final_dir, resolve_model_path(config.model.name_or_path), state)
    else:
        trainer.save_model(str(final_dir))
    if is_main_process():
        tokenizer.save_pretrained(str(final_dir))
        write_final_info(final_dir, resolve_model_path(config.model.name_or_path), config.update.mode)
    barrier()
    return final_dir


def evaluate_run(config: SFTConfig, data: SFTData, final_dir: Path, device) -> dict[str, dict[str, Any]]:
    """{'base': {...}, 'tuned': {...}}: figures and answers of each model, loaded fresh."""
    tuned_cfg = ModelConfig(**{**config.model.model_dump(), "name_or_path": str(final_dir), "tokenizer": None})
    models = {"base": config.model, "tuned": tuned_cfg} if config.eval.compare_base else {"tuned": tuned_cfg}
    results = {}
    for name, model_cfg in models.items():
        say(f"evaluating the {name} model")
        tokenizer = load_tokenizer(model_cfg)
        model = fold_lora(load_causal_lm(model_cfg, device))
        figures, answers = evaluate_model(
            model,
            tokenizer,
            data.validation,
            data.eval_set,
            data.retention,
            config.eval.max_new_tokens,
            config.eval.batch_size,
            config.data.max_length,
            progress=True,
        )
        results[name] = {"figures": figures, "answers": answers}
        del model
    if "base" in results:
        ratio = forgetting_ratio(results["base"]["figures"], results["tuned"]["figures"])
        if ratio is not None:
            results["tuned"]["figures"]["forgetting_ratio"] = ratio
    return results


def fold_lora(model):
    """A LoRA adapter merged into the weights in memory: same logits (tested), and generation is many
    times faster than through the unmerged adapter's extra matmuls. Other adapters stay as they are."""
    from peft import PeftModel

    if isinstance(model, PeftModel) and model.peft_config[model.active_adapter].peft_type.value == "LORA":
        return model.merge_and_unload()
    return model


def headline(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    out = {}
    for name, result in results.items():
        for key in (
            "val_loss",
            "val_perplexity",
            "exact_match",
            "token_f1",
            "rouge_l",
            "retention_perplexity",
            "forgetting_ratio",
        ):
            if key in result["figures"]:
                out[f"{name}_{key}"] = float(result["figures"][key])
    return out


def sample_rows(data: SFTData, results: dict[str, dict[str, Any]], n: int) -> list[dict[str, str]]:
    if data.eval_set is None or not results:
        return []
    rows = []
    for i in range(min(n, len(data.eval_set.prompts))):
        prompt = data.eval_set.prompts[i][-1]["content"]
        row = {"prompt": prompt[:120], "reference": data.eval_set.references[i][:80]}
        for name, result in results.items():
            if i < len(result["answers"]):
                row[name] = result["answers"][i][:120]
        rows.append(row)
    return rows
