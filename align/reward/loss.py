"""Ranking losses for reward models (pure torch, inputs never modified): Bradley-Terry on
pairs, and Plackett-Luce on whole k-way rankings with ties.

Bradley-Terry: P(chosen > rejected) = sigmoid(r_c - r_r). Training maximises its log:

    loss = -mean_i log sigmoid(r_c[i] - r_r[i] - m[i])  +  coef * mean_i (r_c[i] + r_r[i])^2

- m (margin, Llama 2 paper, Touvron et al. 2023, eq. 2): pairs with a clearer preference
  must be separated by at least m before the loss flattens out.
- the second term (reward centering, Eisenstein et al. 2023, "Helping or Herding?")
  pulls the mean reward towards 0, so scores stay comparable across runs; coef ~ 0.01.

Plackett-Luce (Plackett 1975, Luce 1959): a ranking is a sequence of choices, the best of the
responses left, each with probability exp(r_i) / sum over those left. Ties are unordered sets:
each member of a tied group is chosen against the groups below it, never against its tied peers,

    log P(ranking) = sum_i [ r_i - logsumexp({r_i} + {r_l : rank_l worse than rank_i}) ]

so a strict pair is Bradley-Terry's log sigmoid(r_c - r_r), a tie at the top of three is two
Bradley-Terry pairs against the third, the last group adds nothing, and a ranking that ties
everything carries no signal (loss 0, gradient 0).

An ensemble of H heads on one backbone (`heads: H`) trains each head on its own bootstrap
resample of the examples (Poisson(1) counts per example and head, the online bootstrap of Oza &
Russell 2001): the heads agree where the rankings say the same thing many times and drift apart
where the data is thin, which is what active selection asks the ensemble about.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    center_coef: float | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scalar loss from rewards of chosen and rejected responses, each of shape (B,); `weights`
    (B,) weigh the pairs (e.g. by their annotator's reliability), a weighted mean."""
    diff = chosen - rejected  # (B,)
    if margin is not None:
        diff = diff - margin.to(diff.dtype)
    loss = _weighted_mean(-F.logsigmoid(diff), weights)
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


def plackett_luce_log_likelihood(
    rewards: torch.Tensor, ranks: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """log P of each ranking, shape (B,), from rewards and ranks of shape (B, K) (rank 1 = best,
    equal ranks = tie); `mask` (B, K) marks real responses when rankings of fewer than K are padded."""
    mask = torch.ones_like(rewards, dtype=torch.bool) if mask is None else mask.bool()
    ranks = ranks.to(rewards.dtype)
    # competes[b, i, l]: response l is among those response i is chosen against (itself included)
    worse = ranks.unsqueeze(1) > ranks.unsqueeze(2)
    competes = (worse | torch.eye(rewards.shape[1], dtype=torch.bool, device=rewards.device)) & mask.unsqueeze(1)
    pool = rewards.unsqueeze(1).expand_as(competes).masked_fill(~competes, float("-inf"))
    terms = rewards - torch.logsumexp(pool, dim=2)
    return terms.masked_fill(~mask, 0.0).sum(dim=1)


def plackett_luce_loss(
    rewards: torch.Tensor, ranks: torch.Tensor, mask: torch.Tensor | None = None, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean negative log-likelihood of the rankings (optionally weighted per ranking, e.g. by the
    annotator's reliability); the listwise counterpart of bradley_terry_loss."""
    return _weighted_mean(-plackett_luce_log_likelihood(rewards, ranks, mask), weights)


def bootstrap_weights(examples: int, heads: int, seed: int) -> torch.Tensor:
    """(examples, heads) Poisson(1) counts: how often each head sees each example in its resample."""
    generator = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.ones(examples, heads), generator=generator)


def head_weights(weights: torch.Tensor | None, bootstrap: torch.Tensor | None, head: int) -> torch.Tensor | None:
    """Per-example weights for one head: the example's own weight (annotator reliability) times
    the head's bootstrap count; None when neither is given."""
    if bootstrap is None:
        return weights
    counts = bootstrap[:, head]
    return counts if weights is None else weights.to(counts.dtype) * counts


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return values.mean()
    weights = weights.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1e-12)
