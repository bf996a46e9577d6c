"""The per-token reward PPO maximises: the reward-model score at the last response token,
minus a KL penalty on every token (Ziegler et al. 2019, "Fine-Tuning Language Models from
Human Preferences", eq. 2; Stiennon et al. 2020):

    r_t = -kl_coef * KL_t + [t == last real token] * score

plus the score-side transforms applied before shaping: a penalty for responses cut off
by the length limit without EOS, running-statistics normalisation, and clipping.
"""

from __future__ import annotations

import math

import torch


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 0/1 mask -> (B,) index of the last 1 in each row (0 for an all-zero row)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return (positions * mask.long()).max(dim=1).values


def shaped_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards.

    Args: scores (B,) one scalar per response; kl (B, T) per-token KL; mask (B, T) response
    tokens (right padding, or any padding: the score goes to the last 1 of each row).
    Returns (rewards (B, T), kl_penalty (B, T)) with kl_penalty = -kl_coef * kl, both 0 at padding.
    """
    mask = mask.to(kl.dtype)
    kl_penalty = -kl_coef * kl * mask
    rewards = kl_penalty.clone()
    rows = torch.arange(scores.shape[0], device=scores.device)
    last = last_token_index(mask)
    has_token = mask.sum(1) > 0
    rewards[rows, last] = rewards[rows, last] + scores.to(rewards.dtype) * has_token
    return rewards, kl_penalty


def penalize_missing_eos(scores: torch.Tensor, ended: torch.Tensor, penalty: float) -> torch.Tensor:
    """Subtract `penalty` from the score of each response that hit the length limit without EOS.

    Args: scores (B,); ended (B,) bool, True if the response emitted EOS.
    """
    return scores - penalty * (~ended.bool()).to(scores.dtype)


def zero_truncated(scores: torch.Tensor, ended: torch.Tensor) -> torch.Tensor:
    """The score of each response that hit the length limit without EOS set to 0 (B,)."""
    return torch.where(ended.bool(), scores, torch.zeros_like(scores))


def clip_scores(scores: torch.Tensor, limit: float | None) -> torch.Tensor:
    """Clamp scores to [-limit, limit] (no-op for None); keeps one outlier from dominating a batch."""
    return scores if limit is None else scores.clamp(-limit, limit)


class RunningMoments:
    """Running mean/std of reward-model scores over all batches seen (Chan et al. parallel update).

    Used to normalise scores to roughly unit scale so one kl_coef works across reward models.
    Keeps its state in plain floats so it goes into a checkpoint as JSON.
    """

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 0

    def update(self, x: torch.Tensor) -> None:
        n = x.numel()
        if n == 0:
            return
        batch_mean = x.double().mean().item()
        batch_var = x.double().var(unbiased=False).item() if n > 1 else 0.0
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.var = m2 / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 1e-8))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def state_dict(self) -> dict:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), int(state["count"])


def aggregate_sources(
    values: torch.Tensor, weights: torch.Tensor, mode: str = "sum", group_size: int = 1
) -> torch.Tensor:
    """One reward per sample from several sources (learned reward models, rules, functions).

    Args: values (S, B): source s's reward for sample b, NaN where the source said nothing (None);
    weights (S,); mode "sum" or "normalize_then_sum" (TRL's multi_objective_aggregation names);
    group_size: samples per prompt, consecutive (GRPO/RLOO groups; 1 for PPO).
    Returns (B,):
        sum:                 r_b = sum_s w_s * v_sb
        normalize_then_sum:  r_b = sum_s w_s * (v_sb - mean_s) / std_s, each source standardised
                             within each prompt's group of samples (as TRL and GDPO do), or over
                             the whole batch when group_size is 1; mean and sample std over the
                             samples the source spoke about (std over fewer than 2 values, or 0,
                             leaves the centred value), so a 0/1 rule and a reward model on another
                             scale weigh what their weights say. A source that spoke about one
                             sample of a group compares it with nothing: it adds 0 there.
    A source that said nothing about a sample adds nothing to it (its term counts 0, the other
    weights are not rescaled); a sample no source spoke about gets 0.
    """
    said = ~torch.isnan(values)
    if mode == "normalize_then_sum":
        sources, batch = values.shape
        size = group_size if group_size > 1 and batch % group_size == 0 else batch
        grouped, spoke = values.reshape(sources, -1, size), said.reshape(sources, -1, size)
        count = spoke.sum(-1, keepdim=True)
        mean = torch.where(spoke, grouped, torch.zeros_like(grouped)).sum(-1, keepdim=True) / count.clamp(min=1)
        centred = torch.where(spoke, grouped - mean, torch.zeros_like(grouped))
        std = ((centred**2).sum(-1, keepdim=True) / (count - 1).clamp(min=1)).sqrt()
        scale = torch.where((count > 1) & (std > 0), std, torch.ones_like(std))
        values = ((grouped - mean) / scale).reshape(sources, batch)
    elif mode != "sum":
        raise ValueError(f"unknown aggregation {mode!r}")
    terms = torch.where(said, values * weights.to(values.dtype)[:, None], torch.zeros_like(values))
    return terms.sum(0)
