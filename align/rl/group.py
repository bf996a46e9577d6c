"""Critic-free advantages from groups of responses to the same prompt (GRPO, RLOO).

Each prompt is answered n times; rewards are compared within its group, so no value model is
needed. For one group of rewards r_1..r_n (one scalar per response):

    grpo  A_i = (r_i - mean(r)) / (std(r) + eps)       Shao et al. 2024 (DeepSeekMath), eq. 3;
          std is the unbiased sample std (as TRL's GRPOTrainer); scale_by_std=False keeps
          only the centring (the "Dr. GRPO" variant, Liu et al. 2025)
    rloo  A_i = r_i - mean_{j != i} r_j = n/(n-1) * (r_i - mean(r))     Ahmadian et al. 2024

A group whose rewards are all equal carries no signal: every advantage is 0 (never NaN).
The advantage of a response is given to each of its tokens.
"""

from __future__ import annotations

from typing import Literal

import torch

GroupEstimator = Literal["grpo", "rloo"]


def group_advantages(
    rewards: torch.Tensor, group_size: int, estimator: GroupEstimator, scale_by_std: bool = True, eps: float = 1e-4
) -> torch.Tensor:
    """Args: rewards (G*n,) prompt-major (the n responses of a prompt are adjacent); returns (G*n,)."""
    if group_size < 2:
        raise ValueError(f"group advantages need at least 2 responses per prompt, got {group_size}")
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.float().view(-1, group_size)  # (G, n)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if estimator == "rloo":
        advantages = centred * group_size / (group_size - 1)
    elif estimator == "grpo":
        advantages = centred / (grouped.std(dim=1, keepdim=True) + eps) if scale_by_std else centred
    else:
        raise ValueError(f"unknown group estimator {estimator!r}; use grpo or rloo")
    return advantages.view(-1)


def token_advantages(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) per-response advantages -> (N, R): the same value on every response token, 0 at padding."""
    return advantages.to(mask.dtype).unsqueeze(1) * mask
