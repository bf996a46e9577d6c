"""The Bradley-Terry pairwise loss for reward models (pure torch, inputs never modified).

Bradley-Terry: P(chosen > rejected) = sigmoid(r_c - r_r). Training maximises its log:

    loss = -mean_i log sigmoid(r_c[i] - r_r[i] - m[i])  +  coef * mean_i (r_c[i] + r_r[i])^2

- m (margin, Llama 2 paper, Touvron et al. 2023, eq. 2): pairs with a clearer preference
  must be separated by at least m before the loss flattens out.
- the second term (reward centering, Eisenstein et al. 2023, "Helping or Herding?")
  pulls the mean reward towards 0, so scores stay comparable across runs; coef ~ 0.01.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    center_coef: float | None = None,
) -> torch.Tensor:
    """Scalar loss from rewards of chosen and rejected responses, each of shape (B,)."""
    diff = chosen - rejected  # (B,)
    if margin is not None:
        diff = diff - margin.to(diff.dtype)
    loss = -F.logsigmoid(diff).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen + rejected) ** 2).mean()
    return loss


def preference_probability(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """P(chosen preferred) under Bradley-Terry, shape (B,); used for calibration."""
    return torch.sigmoid(chosen - rejected)


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Share of pairs where the chosen response gets the higher reward (ties count as wrong)."""
    if chosen.numel() == 0:
        return float("nan")
    return (chosen > rejected).float().mean().item()
