"""PPO checkpoints: everything needed for a resumed run to continue exactly as if it had not
stopped: trainable policy weights, critic, both optimizers and schedulers, KL controller,
score statistics, prompt position, and every RNG (python, numpy, torch, the minibatch
shuffler; per rank under DeepSpeed). Written by `RunDir.save_checkpoint` (temp dir + COMPLETE marker + rename).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from align.errors import AlignInputError
from align.models import trainable_copy


@dataclass
class LoopState:
    """The non-tensor state of the loop that a checkpoint must carry."""

    step: int
    kl_controller: Any
    moments: Any
    sampler: Any
    shuffle: torch.Generator


def write_checkpoint(folder: Path, actor, critic, loop: LoopState) -> None:
    """Fill `folder` (a temp dir) with the full training state. Plain (non-DeepSpeed) modules only;
    `critic` is None for the critic-free estimators (nothing of a critic is saved then)."""
    torch.save(trainable_copy(actor.module), folder / "policy_trainable.pt")
    optim = {"policy_optimizer": actor.optimizer.state_dict(), "policy_scheduler": actor.scheduler.state_dict()}
    if critic is not None:
        torch.save(critic.module.state_dict(), folder / "critic.pt")
        optim.update(critic_optimizer=critic.optimizer.state_dict(), critic_scheduler=critic.scheduler.state_dict())
    torch.save(optim, folder / "optim.pt")
    torch.save(rng_states(loop), folder / "rng.pt")
    write_loop_state(folder, loop)


def rng_states(loop: LoopState) -> dict[str, Any]:
    """Every random stream the loop draws from (this process's)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "shuffle": loop.shuffle.get_state(),
    }


def set_rng_states(rng: dict[str, Any], loop: LoopState) -> None:
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    loop.shuffle.set_state(rng["shuffle"])


def write_loop_state(folder: Path, loop: LoopState) -> None:
    state = {
        "step": loop.step,
        "kl_controller": loop.kl_controller.state_dict(),
        "moments": loop.moments.state_dict(),
        "sampler": loop.sampler.state_dict(),
    }
    (folder / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def write_deepspeed_checkpoint(folder: Path, actor, critic, loop: LoopState, main: bool, rank: int = 0) -> None:
    """DeepSpeed: every rank writes its shards of both engines (a collective call) and its own RNG
    streams (each rank samples different responses); rank 0 the loop state."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(rng_states(loop), folder / f"rng_rank{rank}.pt")  # before the collective saves, so before COMPLETE
    actor.engine.save_checkpoint(str(folder / "policy"))
    if critic is not None:
        critic.engine.save_checkpoint(str(folder / "critic"))
    if main:
        write_loop_state(folder, loop)
        (folder / "COMPLETE.json").write_text(json.dumps({"step": loop.step}) + "\n")


def read_checkpoint(folder: Path, actor, critic, loop: LoopState, rank: int = 0) -> int:
    """Restore everything `write_checkpoint` saved; returns the step it was taken at."""
    if actor.engine is not None:
        return _read_deepspeed_checkpoint(folder, actor, critic, loop, rank)
    try:
        state = json.loads((folder / "state.json").read_text())
        trainable = torch.load(folder / "policy_trainable.pt", weights_only=True)
        critic_state = torch.load(folder / "critic.pt", weights_only=True) if critic is not None else None
        optim = torch.load(folder / "optim.pt", weights_only=False)
        rng = torch.load(folder / "rng.pt", weights_only=False)
    except (OSError, ValueError, KeyError) as exc:
        raise AlignInputError(
            f"cannot resume from {folder}: {exc}; pick another checkpoint with output.resume=<path>"
        ) from None
    params = dict(actor.module.named_parameters())
    missing = [n for n in trainable if n not in params]
    if missing:
        raise AlignInputError(
            f"cannot resume from {folder}: its policy weights ({missing[0]}, ...) do not fit the configured policy; "
            "was update.mode or update.lora changed since?"
        )
    with torch.no_grad():
        for name, value in trainable.items():
            params[name].copy_(value)
    actor.optimizer.load_state_dict(optim["policy_optimizer"])
    actor.scheduler.load_state_dict(optim["policy_scheduler"])
    if critic is not None:
        critic.module.load_state_dict(critic_state)
        critic.optimizer.load_state_dict(optim["critic_optimizer"])
        critic.scheduler.load_state_dict(optim["critic_scheduler"])
    loop.kl_controller.load_state_dict(state["kl_controller"])
    loop.moments.load_state_dict(state["moments"])
    loop.sampler.load_state_dict(state["sampler"])
    set_rng_states(rng, loop)
    loop.step = int(state["step"])
    return loop.step


def _read_deepspeed_checkpoint(folder: Path, actor, critic, loop: LoopState, rank: int = 0) -> int:
    """Weights, optimizer states, KL controller, score statistics, data position and this rank's
    RNG streams (a checkpoint from before they were saved resumes without them)."""
    actor.engine.load_checkpoint(str(folder / "policy"))
    if critic is not None:
        critic.engine.load_checkpoint(str(folder / "critic"))
    state = json.loads((folder / "state.json").read_text())
    loop.kl_controller.load_state_dict(state["kl_controller"])
    loop.moments.load_state_dict(state["moments"])
    loop.sampler.load_state_dict(state["sampler"])
    rng_file = folder / f"rng_rank{rank}.pt"
    if rng_file.is_file():
        set_rng_states(torch.load(rng_file, weights_only=False), loop)
    loop.step = int(state["step"])
    return loop.step


def find_resume_point(run_dir, resume: str) -> Path | None:
    """'never' -> None; 'auto' -> newest complete checkpoint (None if none yet); else that path."""
    if resume == "never":
        return None
    if resume == "auto":
        return run_dir.latest_checkpoint()
    path = Path(resume)
    if not (path / "state.json").is_file():
        raise AlignInputError(
            f"output.resume = {resume!r} is not a PPO checkpoint (no state.json); use 'auto' or a checkpoints/step-N dir"
        )
    return path
