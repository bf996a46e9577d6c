"""Per-token KL estimators between the policy and the frozen reference.

Samples come from the policy pi, so with log_ratio_t = log pi(a_t|s_t) - log pi_ref(a_t|s_t)
the three estimators of KL(pi || pi_ref) from J. Schulman, "Approximating KL divergence"
(2020, http://joschu.net/blog/kl-approx.html) are, with r = pi_ref / pi = exp(-log_ratio):

    k1 = log_ratio                  unbiased, high variance, can be negative per token
    k2 = 0.5 * log_ratio ** 2       biased, low variance, always >= 0
    k3 = (r - 1) - log r            unbiased, low variance, always >= 0

(OpenRLHF's `compute_approx_kl` offers the same three.)
"""

from __future__ import annotations

from typing import Literal

import torch

KLEstimator = Literal["k1", "k2", "k3"]


def kl_per_token(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor | None = None,
    estimator: KLEstimator = "k1",
) -> torch.Tensor:
    """KL estimate per token, zero where `mask` is 0.

    Args: logprobs, ref_logprobs (B, T) log-probabilities of the sampled tokens; mask (B, T).
    Returns (B, T).
    """
    log_ratio = logprobs.float() - ref_logprobs.float()
    if estimator == "k1":
        kl = log_ratio
    elif estimator == "k2":
        kl = 0.5 * log_ratio.square()
    elif estimator == "k3":
        # clamp keeps exp() finite when a token is far likelier under the policy than the reference
        neg = (-log_ratio).clamp(max=20.0)
        kl = neg.exp() - 1.0 - neg
    else:
        raise ValueError(f"unknown KL estimator {estimator!r}; use k1, k2 or k3")
    return kl * mask if mask is not None else kl


def sequence_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(pi || pi_ref) of each whole response, the k1 sum over its tokens (what KL targets and
    the reports mean by "KL"). Args (B, T) each; returns (B,)."""
    return (kl_per_token(logprobs, ref_logprobs, mask, "k1")).sum(dim=1)
