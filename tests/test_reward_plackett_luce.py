"""Plackett-Luce with ties, by hand: k=2 is Bradley-Terry, a strict 3-way ranking is the product
of its choices, a tie at the top is two pairs against the third, an all-tied ranking carries no
signal, padding changes nothing, and weights weigh rankings."""

from __future__ import annotations

import math

import pytest
import torch

from align.reward.loss import bradley_terry_loss, plackett_luce_log_likelihood, plackett_luce_loss


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_two_responses_are_bradley_terry():
    rewards = t([1.5, 0.25])
    assert plackett_luce_loss(rewards, t([1, 2])).item() == pytest.approx(bradley_terry_loss(t(1.5), t(0.25)).item())
    assert plackett_luce_loss(rewards, t([1, 2])).item() == pytest.approx(math.log(1 + math.exp(-1.25)))


def test_strict_three_way_ranking_by_hand():
    # ranks [2, 1, 3]: response 1 first among all, then response 0 against response 2
    r = [0.5, 2.0, -1.0]
    expected = (r[1] - math.log(sum(math.exp(x) for x in r))) + (r[0] - math.log(math.exp(r[0]) + math.exp(r[2])))
    assert plackett_luce_log_likelihood(t(r), t([2, 1, 3])).item() == pytest.approx(expected)


def test_tie_at_the_top_is_two_pairs_against_the_third():
    r = [0.3, 1.1, -0.4]
    expected = math.log(1 / (1 + math.exp(-(r[0] - r[2])))) + math.log(1 / (1 + math.exp(-(r[1] - r[2]))))
    assert plackett_luce_log_likelihood(t(r), t([1, 1, 2])).item() == pytest.approx(expected)


def test_all_tied_carries_no_signal():
    rewards = t([0.7, -2.0, 3.0]).requires_grad_()
    loss = plackett_luce_loss(rewards, t([1, 1, 1]))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(rewards.grad == 0)


def test_padding_and_weights():
    rewards = t([1.0, 0.0, 9.9], [0.2, 0.8, -5.0])
    ranks = t([1, 2, 1], [2, 1, 3])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    ll = plackett_luce_log_likelihood(rewards, ranks, mask)
    assert ll[0].item() == pytest.approx(math.log(1 / (1 + math.exp(-1.0))))  # the padded 9.9 plays no part
    weighted = plackett_luce_loss(rewards, ranks, mask, weights=t(1.0, 0.0))
    assert weighted.item() == pytest.approx(-ll[0].item())  # weight 0: the second ranking does not count


def test_ranking_collator_and_decided_pairs_by_hand():
    """Two rankings of 3 and 2 responses: every response in one batch (right-padded), the grid
    mask row-major, and accuracy over the decided pairs only (the tie is not a pair)."""
    from align.reward.train import RankingCollator, decided_pair_accuracy

    batch = RankingCollator(pad_token_id=0)(
        [{"response_ids": [[5, 6], [7], [8, 9, 10]], "ranks": [1, 1, 2]}, {"response_ids": [[3], [4]], "ranks": [2, 1]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 0], [7, 0, 0], [8, 9, 10], [3, 0, 0], [4, 0, 0]]
    assert batch["attention_mask"].sum(1).tolist() == [2, 1, 3, 1, 1]
    assert batch["ranking_mask"].tolist() == [[True, True, True], [True, True, False]]
    rewards = torch.tensor([0.9, 0.1, 0.5, 0.2, 0.4])  # in batch order
    grid = rewards.new_zeros(batch["ranking_mask"].shape).masked_scatter(batch["ranking_mask"], rewards)
    assert torch.equal(grid, torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.4, 0.0]]))
    right = decided_pair_accuracy(grid, batch["ranks"], batch["ranking_mask"])
    # decided: (0 over 2) right, (1 over 2) wrong, second ranking: (1 over 0) right
    assert sorted(right.tolist()) == [0.0, 1.0, 1.0]


def test_pair_collator_matches_trls_and_carries_weights():
    from trl.trainer.reward_trainer import DataCollatorForPreference

    from align.reward.train import PairCollator

    examples = [
        {"chosen_ids": [1, 2, 3], "rejected_ids": [4, 5], "margin": 0.5, "weight": 0.25},
        {"chosen_ids": [6, 7], "rejected_ids": [8], "margin": 0.0, "weight": 1.0},
    ]
    ours = PairCollator(pad_token_id=0)(examples)
    trls = DataCollatorForPreference(pad_token_id=0)(
        [{k: e[k] for k in ("chosen_ids", "rejected_ids", "margin")} for e in examples]
    )
    for key in ("input_ids", "attention_mask", "margin"):
        assert torch.equal(ours[key], trls[key]), key
    assert ours["weight"].tolist() == [0.25, 1.0]


def test_weighted_bradley_terry_by_hand():
    chosen, rejected = t(2.0, 0.0), t(1.0, 3.0)
    weighted = bradley_terry_loss(chosen, rejected, weights=t(3.0, 1.0))
    expected = (3 * math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(3.0))) / 4
    assert weighted.item() == pytest.approx(expected)
    assert bradley_terry_loss(chosen, rejected, weights=t(1.0, 0.0)).item() == pytest.approx(
        math.log(1 + math.exp(-1.0))
    )


def test_bootstrap_weights_are_seeded_poisson_counts_per_head():
    from align.reward.loss import bootstrap_weights

    counts = bootstrap_weights(4000, 3, seed=7)
    assert counts.shape == (4000, 3) and torch.equal(counts, bootstrap_weights(4000, 3, seed=7))
    assert not torch.equal(counts, bootstrap_weights(4000, 3, seed=8))
    assert bool((counts == counts.round()).all()) and float(counts.min()) == 0.0
    assert abs(float(counts.mean()) - 1.0) < 0.05 and abs(float(counts.var()) - 1.0) < 0.1  # Poisson(1)
    assert not torch.equal(counts[:, 0], counts[:, 1])  # each head its own resample


def test_head_weights_multiply_the_example_weight_by_the_heads_count():
    from align.reward.loss import bradley_terry_loss, head_weights

    bootstrap = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    weights = torch.tensor([0.5, 1.0])
    assert torch.equal(head_weights(weights, bootstrap, 0), torch.tensor([1.0, 0.0]))
    assert torch.equal(head_weights(None, bootstrap, 1), torch.tensor([0.0, 1.0]))
    assert head_weights(weights, None, 0) is weights
    # head 0 sees only the first pair: its loss is that pair's -log sigmoid(1 - 0)
    chosen, rejected = torch.tensor([1.0, -3.0]), torch.tensor([0.0, 0.0])
    loss = bradley_terry_loss(chosen, rejected, weights=head_weights(weights, bootstrap, 0))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.0)), abs=1e-6)
