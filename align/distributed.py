"""Who am I in a distributed launch? Rank 0 alone writes logs, reports and final models.

The launchers (`deepspeed`, `torchrun`, `accelerate launch`) all export RANK/WORLD_SIZE;
reading them here, in one place, keeps the rest of the code launcher-agnostic.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path

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


def say(message: str, warning: bool = False) -> None:
    """Print once per launch (rank 0): progress to stdout, warnings to stderr."""
    if is_main_process():
        if warning:
            print(f"WARNING: {message}", file=sys.stderr, flush=True)
        else:
            print(message, flush=True)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def finish() -> None:
    """Wait for every rank, then tear the process group down.

    Called once distributed training is over: rank 0 may go on alone (evaluation, reports)
    while the others exit, and a process that exits with a live process group (gloo/shm
    threads still running) aborts with "terminate called without an active exception".
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def cpu_allreduce_buffer(environ=os.environ) -> Path | None:
    """This rank's shared-memory buffer of DeepSpeed's CPU all-reduce (/dev/shm), named by the
    launch's address, port and rank; None outside a launch."""
    if not all(key in environ for key in ("MASTER_ADDR", "MASTER_PORT", "RANK")):
        return None
    name = (
        f"deepspeed_allreduce_buffer_{os.getuid()}_{environ['MASTER_ADDR']}_{environ['MASTER_PORT']}_{environ['RANK']}"
    )
    return Path("/dev/shm") / name


def release_shared_memory_at_exit() -> None:
    """DeepSpeed's CPU all-reduce leaves a 69 MB buffer per rank in /dev/shm, which is RAM, and
    never removes it: every CPU launch would keep world_size x 69 MB until reboot (a day of test
    runs filled 7.7 GB). Each rank removes its own name when it exits; memory still mapped by a
    live process stays valid until that process ends."""
    buffer = cpu_allreduce_buffer()
    if buffer is not None:
        atexit.register(buffer.unlink, missing_ok=True)


def check_world(num_processes: int, process_index: int, who: str = "the trainer") -> None:
    """Fail fast when a library's idea of the world differs from the process group's.

    A mismatch (e.g. accelerate on a GPU-less machine without use_cpu: num_processes=1 on
    every rank of a 2-process gloo group) makes every gather fail and every rank write as
    rank 0; better one clear error at start than a crash at the first logged step.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    actual = (dist.get_world_size(), dist.get_rank())
    if (num_processes, process_index) != actual:
        raise RuntimeError(
            f"{who} sees {num_processes} process(es), this one being #{process_index}, but the process group has "
            f"{actual[0]} with this one #{actual[1]}; on a machine without a GPU pass use_cpu=True to TrainingArguments"
        )
