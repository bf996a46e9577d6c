"""Our config -> HF/TRL trainer arguments, in one place.

`training_arguments_kwargs` is the part every HF-Trainer-based stage shares (schedule,
batch, precision from align.device, checkpoint cadence, DeepSpeed, seeds); `sft_arguments`
adds what TRL's SFTConfig needs. A TRL or transformers upgrade should touch only this file.

Logging and checkpoint rotation are ours (metrics.jsonl, checkpoints/step-N with a
COMPLETE marker), so HF's report_to and save_total_limit are switched off here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from align.config.common import TrainingConfig
from align.device import precision_flags


def training_arguments_kwargs(
    training: TrainingConfig,
    output_dir: Path,
    dtype: torch.dtype,
    deepspeed: str | None = None,
    has_eval: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for any `transformers.TrainingArguments` subclass (SFTConfig, RewardConfig, ...)."""
    if has_eval and training.eval_steps:
        eval_strategy = {"eval_strategy": "steps", "eval_steps": training.eval_steps}
    elif has_eval:
        eval_strategy = {"eval_strategy": "epoch"}
    else:
        eval_strategy = {"eval_strategy": "no"}
    if training.save_steps:
        save = {"save_strategy": "steps", "save_steps": training.save_steps}
    else:
        save = {"save_strategy": "no"}
    return {
        "output_dir": str(output_dir),
        "learning_rate": training.learning_rate,
        "lr_scheduler_type": training.lr_scheduler,
        # a float in [0, 1) is a ratio of the total steps in transformers >= 5
        "warmup_steps": min(training.warmup_ratio, 0.999),
        "num_train_epochs": training.num_epochs,
        "max_steps": training.max_steps,
        "per_device_train_batch_size": training.batch_size,
        "per_device_eval_batch_size": training.batch_size,
        "gradient_accumulation_steps": training.gradient_accumulation_steps,
        "max_grad_norm": training.max_grad_norm,
        "weight_decay": training.weight_decay,
        "seed": training.seed,
        "data_seed": training.seed,
        "logging_strategy": "steps",
        "logging_steps": training.logging_steps,
        "logging_first_step": True,
        **eval_strategy,
        **save,
        "save_total_limit": None,  # rotation is RunDir's job (complete checkpoints only)
        "save_only_model": False,  # optimizer, scheduler and RNG too: resume must be exact
        "restore_callback_states_from_checkpoint": True,  # early-stopping counters survive a resume
        "report_to": "none",  # metrics.jsonl + TensorBoard are written by our callback
        "activation_checkpointing": training.gradient_checkpointing,  # the v5 name of gradient checkpointing
        "deepspeed": deepspeed,
        "dataloader_num_workers": 0,
        "disable_tqdm": False,
        # Without a GPU, accelerate must be told it runs on CPU: otherwise, under a distributed
        # launch with DeepSpeed, it finds no backend, records num_processes=1 and rank 0 on
        # every process, yet gathers across the real gloo group, which fails with "gloo
        # allgather: invalid output tensor list (expected length 2, got 1)" on the first metric
        # gather (the "0-d tensor" failure) and would let every rank write as rank 0.
        "use_cpu": not torch.cuda.is_available(),
        **precision_flags(dtype),
    }


def sft_arguments(config, output_dir: Path, dtype: torch.dtype, has_eval: bool):
    """TRL SFTConfig for our SFTConfig. Data arrive tokenized (align.sft.data), so TRL only
    builds labels from the completion mask, pads and (optionally) packs."""
    from trl import SFTConfig as TRLSFTConfig

    return TRLSFTConfig(
        **training_arguments_kwargs(config.training, output_dir, dtype, config.deepspeed, has_eval),
        max_length=config.data.max_length,
        packing=config.packing,
        completion_only_loss=config.completion_only,
        dataset_num_proc=None,
        eval_packing=False,  # validation loss per example, comparable across packing on/off
        # mixture-of-experts: under prefix tuning the router is frozen and TRL's load-balancing loss
        # cannot line the virtual prefix up with the router logits; None keeps the model's own coefficient
        router_aux_loss_coef=0.0 if config.update.mode == "prefix_tuning" else None,
    )


def release_deepspeed_globals() -> None:
    """Forget the ZeRO-3 config that TrainingArguments registered process-wide.

    While it is registered, every later `from_pretrained` builds the model inside
    `deepspeed.zero.Init` and broadcasts its weights between ranks, which hangs or fails once
    training is over and rank 0 evaluates alone.
    """
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
