"""Masked statistics and Generalized Advantage Estimation over padded response tokens.

GAE (Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage
Estimation", eq. 16), for one response of tokens t = 0..T-1 with V(s_T) = 0:

    delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma * lam * A_{t+1}
    R_t     = A_t + V(s_t)                       (the critic's regression target)

Padded tokens (mask 0) carry no reward and no value, so a response ends at its last real
token whatever the padding looks like.
"""

from __future__ import annotations

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over entries where mask is 1; (B, T) -> scalar, or reduced along `dim`. 0 if none."""
    count = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over entries where mask is 1 (Bessel-corrected when `unbiased` and n > 1)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean).square(), mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries; masked-out entries come back as 0.

    shift_mean=False keeps the mean (only rescales), as TRL does for rewards.
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns.

    Args: rewards, values, mask (B, T) over response tokens (mask 1 = real token).
    Returns (advantages, returns), both (B, T), 0 at padding.
    """
    mask = mask.to(values.dtype)
    rewards, values = rewards * mask, values * mask
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(values[:, 0])
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = delta + gamma * lam * next_adv
        # at a padded position keep carrying the later state unchanged (it is 0 past the end)
        m = mask[:, t]
        advantages[:, t] = adv * m
        next_adv = torch.where(m.bool(), adv, next_adv)
        next_value = torch.where(m.bool(), values[:, t], next_value)
    returns = (advantages + values) * mask
    return advantages, returns
