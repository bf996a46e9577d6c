"""PPO losses and diagnostics (Schulman et al. 2017, "Proximal Policy Optimization
Algorithms", eq. 7 and 9), named as in the paper and CleanRL so they can be checked:

    ratio_t   = exp(logp_t - old_logp_t)
    pg_loss1  = -A_t * ratio_t
    pg_loss2  = -A_t * clip(ratio_t, 1 - eps, 1 + eps)
    pg_loss   = mean_t max(pg_loss1, pg_loss2)

    v_clipped = old_V_t + clip(V_t - old_V_t, -eps_v, eps_v)
    vf_loss   = 0.5 * mean_t max((V_t - R_t)^2, (v_clipped - R_t)^2)

All means are over real response tokens of the minibatch (mask 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from align.rl.advantages import masked_mean, masked_var


@dataclass
class PolicyLossOutput:
    loss: torch.Tensor  # scalar, differentiable
    clipfrac: torch.Tensor  # share of tokens where the clipped term was the active one
    approx_kl: torch.Tensor  # k3 estimate of KL(old || new) over the tokens, for monitoring
    ratio_mean: torch.Tensor


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip_eps: float
) -> PolicyLossOutput:
    """Clipped surrogate loss. All inputs (B, T); `old_logprobs` and `advantages` are constants."""
    mask = mask.to(logprobs.dtype)
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(pg_loss1, pg_loss2), mask)
    with torch.no_grad():
        clipfrac = masked_mean((pg_loss2 > pg_loss1).to(mask.dtype), mask)
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
        ratio_mean = masked_mean(ratio, mask)
    return PolicyLossOutput(loss, clipfrac, approx_kl, ratio_mean)


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip_eps: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss (None = unclipped). Inputs (B, T). Returns (loss, clipfrac)."""
    mask = mask.to(values.dtype)
    vf_loss1 = (values - returns).square()
    if clip_eps is None:
        return 0.5 * masked_mean(vf_loss1, mask), torch.zeros((), dtype=values.dtype)
    v_clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
    vf_loss2 = (v_clipped - returns).square()
    loss = 0.5 * masked_mean(torch.maximum(vf_loss1, vf_loss2), mask)
    with torch.no_grad():
        clipfrac = masked_mean((vf_loss2 > vf_loss1).to(mask.dtype), mask)
    return loss, clipfrac


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each next-token distribution: (B, T, V) logits -> (B, T)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var[R - V] / Var[R] over real tokens: 1 = perfect critic, 0 = no better than a constant."""
    var_returns = masked_var(returns, mask)
    if var_returns <= 0:
        return torch.tensor(float("nan"))
    return 1.0 - masked_var(returns - values, mask) / var_returns
