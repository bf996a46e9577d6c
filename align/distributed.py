"""Who am I in a distributed launch? Rank 0 alone writes logs, reports and final models.

The launchers (`deepspeed`, `torchrun`, `accelerate launch`) all export RANK/WORLD_SIZE;
reading them here, in one place, keeps the rest of the code launcher-agnostic.
"""

from __future__ import annotations

import os

import torch.distributed as dist


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
