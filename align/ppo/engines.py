"""Optimizers, schedulers and (optionally) DeepSpeed engines for the policy and the critic.

The one place that maps our config to torch/transformers/DeepSpeed objects. Under DeepSpeed
both trainable models get a ZeRO engine (stage from the JSON); the reward model and, with
full fine-tuning, the reference copy stay plain inference modules on every rank.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import get_scheduler

from align.config.ppo import PPOConfig
from align.ppo.update import Optimised


def deepspeed_config(path: str, config: PPOConfig) -> dict:
    """Our DeepSpeed JSON with its "auto" values filled from the PPO config."""
    ds = json.loads(Path(path).read_text())
    fills = {
        "train_micro_batch_size_per_gpu": config.ppo.minibatch_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": config.optim.max_grad_norm,
    }
    for key, value in fills.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    for key in ("bf16", "fp16"):
        if isinstance(ds.get(key), dict) and ds[key].get("enabled") == "auto":
            ds[key]["enabled"] = False  # PPO keeps fp32 master weights here; mixed precision comes from policy.dtype
    ds.setdefault("zero_allow_untested_optimizer", True)  # torch AdamW: works under ZeRO, just not DeepSpeed's own
    zero = ds.get("zero_optimization", {})
    for key in [k for k, v in zero.items() if v == "auto"]:
        del zero[key]  # DeepSpeed's own defaults
    return ds


def make_optimised(module: torch.nn.Module, lr: float, config: PPOConfig, name: str) -> Optimised:
    """AdamW over the trainable parameters + LR schedule, wrapped in a DeepSpeed engine if configured."""
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=config.optim.weight_decay)
    scheduler = get_scheduler(
        config.optim.lr_scheduler, optimizer, num_warmup_steps=config.optim.warmup_steps, num_training_steps=config.schedule.steps
    )
    engine = None
    if config.deepspeed:
        import deepspeed

        engine, optimizer, _, _ = deepspeed.initialize(
            model=module, optimizer=optimizer, model_parameters=params, config=deepspeed_config(config.deepspeed, config)
        )
    return Optimised(module, optimizer, scheduler, config.optim.max_grad_norm, name, engine)
