"""Rankings -> pairs, aggregation, dedup, split without prompt leakage, and the loss by hand."""

from __future__ import annotations

import math

import pytest
import torch

from align.reward.loss import bradley_terry_loss, pairwise_accuracy, preference_probability
from align.reward.pairs import (
    Pair,
    Ranking,
    aggregate_rankings,
    clean_pairs,
    ranking_pairs,
    rankings_to_pairs,
    split_by_group,
)


def as_tuples(pairs):
    return sorted((p.chosen, p.rejected, p.gap) for p in pairs)


def test_k2_gives_one_pair_better_first():
    pairs = ranking_pairs(Ranking("q", ["a", "b"], [2, 1]))
    assert as_tuples(pairs) == [("b", "a", 1.0)]


def test_k3_with_a_tie_skips_the_tied_pair():
    # a and c tie at rank 1: pairs (a,b) and (c,b) only
    pairs = ranking_pairs(Ranking("q", ["a", "b", "c"], [1, 2, 1]))
    assert as_tuples(pairs) == [("a", "b", 1.0), ("c", "b", 1.0)]


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_k_distinct_ranks_give_k_choose_2_pairs(k):
    responses = [f"r{i}" for i in range(k)]
    ranks = list(range(k, 0, -1))  # r0 worst ... r{k-1} best
    pairs = ranking_pairs(Ranking("q", responses, ranks))
    assert len(pairs) == k * (k - 1) // 2
    assert all(int(p.chosen[1:]) > int(p.rejected[1:]) for p in pairs)
    assert max(p.gap for p in pairs) == k - 1


def test_k5_with_two_ties_and_margin_from_gap():
    # ranks 1,1,2,3,3: pairs = 10 - 2 tied = 8; gaps: 1-vs-2 (x2): 1, 1-vs-3 (x4): 2, 2-vs-3 (x2): 1
    pairs = ranking_pairs(Ranking("q", list("abcde"), [1, 1, 2, 3, 3]), margin_from_gap=True)
    assert len(pairs) == 8
    assert sorted(p.margin for p in pairs) == [1, 1, 1, 1, 2, 2, 2, 2]
    assert all(p.margin == p.gap for p in pairs)
    assert all(p.margin == 0 for p in ranking_pairs(Ranking("q", list("abcde"), [1, 1, 2, 3, 3])))


def test_all_tied_duplicates_and_same_text_are_counted():
    rankings = [
        Ranking("q1", ["a", "b"], [1, 1]),  # all tied: nothing
        Ranking("q2", ["x", "y"], [1, 2], annotator="ann1"),
        Ranking("q2", ["x", "y"], [1, 2], annotator="ann1"),  # the same submission twice
        Ranking("q3", ["same", "same", "other"], [1, 2, 3]),  # duplicate response text
    ]
    pairs, stats = rankings_to_pairs(rankings)
    assert stats.records == 4 and stats.duplicate_records == 1 and stats.all_tied == 1
    assert stats.chosen_equals_rejected == 1
    assert as_tuples(pairs) == [("same", "other", 1.0), ("same", "other", 2.0), ("x", "y", 1.0)]
    assert stats.pairs == 3


def test_separate_annotators_keep_separate_and_contradicting_pairs():
    rankings = [Ranking("q", ["a", "b"], [1, 2], annotator="A"), Ranking("q", ["b", "a"], [1, 2], annotator="B")]
    pairs, stats = rankings_to_pairs(rankings)
    assert as_tuples(pairs) == [("a", "b", 1.0), ("b", "a", 1.0)] and stats.duplicate_records == 0


def test_aggregation_uses_mean_rank_over_annotators():
    # three annotators, responses listed in different orders
    rankings = [
        Ranking("q", ["a", "b", "c"], [1, 2, 3], annotator="A"),
        Ranking("q", ["c", "a", "b"], [1, 2, 3], annotator="B"),  # a=2, b=3, c=1
        Ranking("q", ["b", "a", "c"], [1, 2, 3], annotator="C"),  # a=2, b=1, c=3
    ]
    (merged,) = aggregate_rankings(rankings)
    means = dict(zip(merged.responses, merged.ranks))
    assert means == pytest.approx({"a": 5 / 3, "b": 2.0, "c": 7 / 3}) and merged.n_annotators == 3
    pairs, _ = rankings_to_pairs(rankings, aggregate=True, margin_from_gap=True)
    assert [(p.chosen, p.rejected) for p in sorted(pairs, key=lambda p: p.margin)] == [
        ("a", "b"),
        ("b", "c"),
        ("a", "c"),
    ]
    assert sorted(p.margin for p in pairs) == pytest.approx([1 / 3, 1 / 3, 2 / 3])


def test_aggregation_of_a_perfect_disagreement_is_a_tie():
    rankings = [Ranking("q", ["a", "b"], [1, 2], annotator="A"), Ranking("q", ["a", "b"], [2, 1], annotator="B")]
    pairs, stats = rankings_to_pairs(rankings, aggregate=True)
    assert pairs == [] and stats.all_tied == 1


def test_aggregation_groups_by_item_id_when_given():
    rankings = [Ranking("q", ["a", "b"], [1, 2], item_id="1"), Ranking("q", ["a", "b"], [2, 1], item_id="2")]
    assert len(aggregate_rankings(rankings)) == 2


def test_clean_pairs_drops_duplicates_and_chosen_equal_rejected():
    pairs = [Pair("q", "a", "b"), Pair("q", "a", "b"), Pair("q", "c", "c"), Pair("q2", "a", "b")]
    kept, stats = clean_pairs(pairs)
    assert len(kept) == 2 and stats.duplicate_records == 1 and stats.chosen_equals_rejected == 1


def test_split_keeps_every_prompt_in_one_split():
    pairs = [Pair(f"prompt {i % 37}", f"c{i}", f"r{i}") for i in range(400)]
    splits = split_by_group(pairs, lambda p: p.group, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=3)
    groups = {name: {p.group for p in items} for name, items in splits.items()}
    assert not groups["train"] & groups["validation"] and not groups["train"] & groups["test"]
    assert not groups["validation"] & groups["test"]
    assert sum(len(v) for v in splits.values()) == 400
    assert len(groups["validation"]) == 4 and len(groups["test"]) == 4 and len(groups["train"]) == 29
    again = split_by_group(pairs, lambda p: p.group, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=3)
    assert again == splits  # deterministic


def test_split_never_leaves_a_requested_split_empty():
    pairs = [Pair(f"p{i}", "a", "b") for i in range(5)]
    splits = split_by_group(pairs, lambda p: p.group, {"train": 0.9, "validation": 0.05}, seed=0)
    assert len(splits["validation"]) == 1 and len(splits["train"]) == 4


def test_bradley_terry_loss_by_hand():
    chosen, rejected = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    # -log sigmoid(1) = log(1 + e^-1) = 0.313262; -log sigmoid(-1) = 1.313262
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.813262, abs=1e-6)
    # margin 0.5 on the first pair: -log sigmoid(0.5) = 0.474077
    with_margin = bradley_terry_loss(chosen, rejected, margin=torch.tensor([0.5, 0.0])).item()
    assert with_margin == pytest.approx((0.474077 + 1.313262) / 2, abs=1e-6)
    # centering: (1+0)^2 and (0+1)^2 -> mean 1, times 0.1
    centered = bradley_terry_loss(chosen, rejected, center_coef=0.1).item()
    assert centered == pytest.approx(expected + 0.1, abs=1e-6)


def test_loss_does_not_modify_inputs_and_has_gradients():
    chosen = torch.tensor([0.3, -0.2], requires_grad=True)
    rejected = torch.tensor([0.1, 0.4], requires_grad=True)
    margin = torch.tensor([1.0, 2.0])
    bradley_terry_loss(chosen, rejected, margin, center_coef=0.01).backward()
    assert margin.tolist() == [1.0, 2.0]
    assert chosen.grad is not None and (chosen.grad < 0).all()  # raising chosen lowers the loss


def test_accuracy_and_probability():
    chosen, rejected = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 3.0])
    assert pairwise_accuracy(chosen, rejected) == pytest.approx(1 / 3)  # the tie counts as wrong
    assert preference_probability(chosen, rejected)[1].item() == pytest.approx(0.5)


def test_task_column_travels_to_pairs_and_aggregates():
    rankings = [
        Ranking("q", ["a", "b"], [1, 2], annotator="A", task="math"),
        Ranking("q", ["a", "b"], [1, 2], annotator="B", task="math"),
    ]
    pairs, _ = rankings_to_pairs(rankings, aggregate=True)
    assert [p.task for p in pairs] == ["math"]
