"""Optimizers, schedulers and (optionally) DeepSpeed engines for the policy and the critic,
each wrapped as an `Optimised` (the stage calls the policy's one `actor`).

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
from align.errors import TrainingDiverged


class Optimised:
    """A module with its optimizer and scheduler, or a DeepSpeed engine playing all three."""

    def __init__(self, module, optimizer, scheduler, max_grad_norm: float, name: str, engine=None):
        self.module, self.optimizer, self.scheduler = module, optimizer, scheduler
        self.max_grad_norm, self.name, self.engine = max_grad_norm, name, engine

    @property
    def forward_module(self):
        return self.engine if self.engine is not None else self.module

    def step(self, loss: torch.Tensor) -> float:
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"{self.name} loss is {loss.item()} (NaN/inf); the update was refused and the weights are unchanged. "
                "Check optim.*_lr (try 10x lower), reward.clip / reward.normalize, and the reward model's scores"
            )
        if self.engine is not None:
            self.engine.backward(loss)
            self.engine.step()
            norm = self.engine.get_global_grad_norm()
            return float(norm) if norm is not None else float("nan")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.module.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(
                f"{self.name} gradient norm is {norm.item()}; the update was refused and the weights are unchanged. "
                "Lower optim.*_lr or set reward.clip"
            )
        self.optimizer.step()
        return float(norm)

    def end_of_step(self) -> None:
        """Advance the LR schedule once per PPO step (not per minibatch; DeepSpeed is not given it)."""
        if self.scheduler is not None:
            self.scheduler.step()


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
        config.optim.lr_scheduler,
        optimizer,
        num_warmup_steps=config.optim.warmup_steps,
        num_training_steps=config.schedule.steps,
    )
    engine = None
    if config.deepspeed:
        import deepspeed

        engine, optimizer, _, _ = deepspeed.initialize(
            model=module,
            optimizer=optimizer,
            model_parameters=params,
            config=deepspeed_config(config.deepspeed, config),
        )
    return Optimised(module, optimizer, scheduler, config.optim.max_grad_norm, name, engine)
