"""How unsure an ensemble reward model is about an item's ranking: pure functions on the heads'
rewards, shape (heads, n) for the n responses of one item. No model, no I/O.

A pair (i, j) is worth asking a person about when the heads disagree on its order. Each head h
says P_h(i > j) = sigmoid(r_hi - r_hj) (Bradley-Terry); the disagreement is the mutual
information between the order and the head (BALD, Houlsby et al. 2011):

    MI(i, j) = H(mean_h P_h) - mean_h H(P_h),   H the binary entropy in nats

It is 0 when every head gives the same probability, however close to 1/2 (a pair the model is
sure is a coin flip: another ranking would not change its mind), and at most log 2 (half the
heads sure one way, half the other). An item's k of n responses are picked greedily to maximise
the disagreement among the chosen pairs; the item's score is the mean over those pairs.
"""

from __future__ import annotations

import torch


def _entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-7, 1 - 1e-7)
    return -(p * p.log() + (1 - p) * (1 - p).log())


def pair_disagreement(rewards: torch.Tensor) -> torch.Tensor:
    """(heads, n) rewards -> (n, n) symmetric mutual information of each pair's order, 0 on the diagonal."""
    probabilities = torch.sigmoid(rewards.unsqueeze(2) - rewards.unsqueeze(1))  # (heads, n, n): P_h(i > j)
    information = _entropy(probabilities.mean(0)) - _entropy(probabilities).mean(0)
    information.fill_diagonal_(0.0)
    return information.clamp_min(0.0)


def choose_responses(disagreement: torch.Tensor, k: int) -> list[int]:
    """k of the n responses (in their original order): the most disputed pair first, then each
    response adding the most disagreement with those already chosen."""
    n = disagreement.shape[0]
    if k >= n:
        return list(range(n))
    flat = int(torch.argmax(disagreement))
    chosen = [flat // n, flat % n] if flat // n != flat % n else [0, 1]
    while len(chosen) < k:
        gain = disagreement[:, chosen].sum(1)
        gain[chosen] = -1.0
        chosen.append(int(torch.argmax(gain)))
    return sorted(chosen)


def item_uncertainty(rewards: torch.Tensor, k: int) -> tuple[float, list[int]]:
    """(score, chosen responses) of one item: the mean disagreement over the chosen responses' pairs."""
    disagreement = pair_disagreement(rewards)
    chosen = choose_responses(disagreement, k)
    index = torch.tensor(chosen)
    sub = disagreement[index][:, index]
    pairs = len(chosen) * (len(chosen) - 1)
    return (float(sub.sum() / pairs) if pairs else 0.0), chosen
