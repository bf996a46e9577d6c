"""Evaluation figures on hand-made scores: calibration, accuracy by gap/task, Kendall's tau, gold agreement."""

from __future__ import annotations

import math

import pytest
import torch

from align.reward.evaluate import accuracy_by_gap, calibration, evaluate_split, gold_agreement, kendall_tau
from align.reward.pairs import Pair, Ranking

SCORES = {"best": 2.0, "mid": 1.0, "worst": 0.0}


def score(prompts, responses):
    return torch.tensor([SCORES[r] for r in responses])


def test_calibration_counts_both_orientations():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    table = calibration(chosen, rejected, bins=2)
    s = 1 / (1 + math.exp(-2))  # 0.8808
    low, high = table["bins"]
    assert low["count"] == 1 and low["predicted"] == pytest.approx(1 - s) and low["observed"] == 0
    assert (
        high["count"] == 3
        and high["predicted"] == pytest.approx((s + 1) / 3)
        and high["observed"] == pytest.approx(2 / 3)
    )
    assert table["ece"] == pytest.approx(0.25 * (1 - s) + 0.75 * abs((s + 1) / 3 - 2 / 3))


def test_accuracy_by_gap_groups_fractional_gaps_in_half_steps():
    chosen, rejected = torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0.0, 1.0, 0.0, 2.0])
    table = accuracy_by_gap(chosen, rejected, [1, 1, 1 / 3, None])
    assert (
        table["1"] == {"accuracy": 0.5, "pairs": 2}
        and table["0.5"]["accuracy"] == 1.0
        and table["n/a"]["accuracy"] == 0.0
    )


def test_kendall_tau_of_perfect_and_reversed_orders():
    perfect = Ranking("q1", ["best", "mid", "worst"], [1, 2, 3])
    reversed_ = Ranking("q2", ["best", "mid", "worst"], [3, 2, 1])
    assert kendall_tau(score, [perfect])["kendall_tau"] == pytest.approx(1.0)
    both = kendall_tau(score, [perfect, reversed_])
    assert both["kendall_tau"] == pytest.approx(0.0) and both["tau_items"] == 2


def test_evaluate_split_and_gold_agreement():
    pairs = [Pair("q", "best", "worst", gap=2, task="a"), Pair("q", "worst", "mid", gap=1, task="b")]
    figures, (chosen, rejected) = evaluate_split(score, pairs, bins=4)
    assert figures["accuracy"] == 0.5 and figures["accuracy_by_task"] == {
        "a": {"accuracy": 1.0, "pairs": 1},
        "b": {"accuracy": 0.0, "pairs": 1},
    }
    gold = gold_agreement(lambda p, r: SCORES[r], pairs, chosen, rejected)  # the annotators got pair 2 wrong
    assert gold == {"annotator_gold_agreement": 0.5, "model_gold_accuracy": 1.0, "gold_pairs": 2}
