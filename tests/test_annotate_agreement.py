"""Agreement and aggregation against hand-computed and published values."""

from __future__ import annotations

import math

import pytest

from annotation_ui.agreement import (
    aggregate,
    agreement_report,
    annotator_reliability,
    bradley_terry,
    dense_ranks,
    kendall_tau_b,
    krippendorff_alpha_ordinal,
    mean_rank,
    pair_agreement,
    reliability_weights,
)
from annotation_ui.assignment import Candidate, display_order, pick_next, to_display, to_stored


def test_krippendorff_alpha_ordinal_matches_the_published_example():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 coders x 12 units
    # example with missing values: alpha ordinal = 0.815.
    n = None
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    units = [[v for v in column if v is not None] for column in zip(*coders)]
    assert krippendorff_alpha_ordinal(units) == pytest.approx(0.815, abs=5e-4)


def test_krippendorff_alpha_extremes():
    assert krippendorff_alpha_ordinal([[1, 1], [2, 2], [3, 3]]) == pytest.approx(1.0)
    assert math.isnan(krippendorff_alpha_ordinal([[1], [2]]))  # nothing pairable
    # Two coders who always disagree in opposite directions: systematic disagreement, alpha < 0.
    assert krippendorff_alpha_ordinal([[1, 2], [2, 1]]) < 0


def test_pair_agreement_and_tau_by_hand():
    # pairs (0,1), (0,2), (1,2): a says 0>1, 0>2, 1>2; b says 0>1, 0=2, 2>1 -> 1 of 3 agree
    assert pair_agreement([1, 2, 3], [1, 3, 1]) == (1, 3)
    assert kendall_tau_b([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # tau-b with a tie: concordant 2 (0,1),(0,2); discordant 0; tie in y on (1,2):
    # tau_b = (2 - 0) / sqrt(3 * 2) = 0.8165
    assert kendall_tau_b([1, 2, 3], [1, 2, 2]) == pytest.approx(2 / math.sqrt(6))
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))


def test_agreement_report_per_pair():
    report = agreement_report({1: {"a": [1, 2, 3], "b": [1, 2, 3]}, 2: {"a": [1, 2], "b": [2, 1]}, 3: {"a": [1, 2]}})
    assert report["items_with_overlap"] == 2
    assert report["pairwise_agreement"] == pytest.approx(3 / 4)  # 3 of 3 pairs on item 1, 0 of 1 on item 2
    assert report["kendall_tau_b"] == pytest.approx(0.0)  # mean of 1 and -1
    assert report["per_pair"][0]["annotators"] == ["a", "b"] and report["per_pair"][0]["shared_items"] == 2


def test_mean_rank_aggregation_keeps_ties():
    assert mean_rank([[1, 2, 3], [2, 1, 3]]) == [1.5, 1.5, 3.0]
    assert aggregate([[1, 2, 3], [2, 1, 3]]) == [1, 1, 2]
    assert aggregate([[1, 2, 3], [1, 3, 2], [2, 1, 3]]) == [1, 2, 3]  # means 4/3, 2, 8/3


def test_bradley_terry_with_ties():
    # 0 beats 1 twice: stronger; 2 loses everything: weakest; symmetric data gives equal strengths.
    scores = bradley_terry([[1, 2, 3], [1, 2, 3]])
    assert scores[0] > scores[1] > scores[2]
    assert aggregate([[1, 2, 3], [2, 1, 3]], "bradley_terry") == [1, 1, 2]
    assert aggregate([[1, 1, 2]], "bradley_terry") == [1, 1, 2]
    # Two responses, one win each way plus prior: the MM fixed point is p0 = p1.
    a, b = bradley_terry([[1, 2], [2, 1]])
    assert a == pytest.approx(b)


def test_display_order_round_trip_and_differs_between_annotators():
    order = display_order(7, "alice", 5)
    assert sorted(order) == list(range(5)) and order == display_order(7, "alice", 5)
    assert any(display_order(7, name, 5) != order for name in ("bob", "carol", "dave"))
    stored = [3, 1, 2, 5, 4]
    assert to_stored(to_display(stored, order), order) == stored


def test_pick_next_finishes_items_first():
    candidates = [Candidate(1, 0, 0), Candidate(2, 1, 0), Candidate(3, 1, 1), Candidate(4, 0, 1)]
    assert pick_next(candidates, quota=2).item_id == 2  # 3 is full (1 ranking + 1 reservation)
    assert pick_next([Candidate(3, 1, 1)], quota=2) is None


def test_reliability_by_hand():
    """Four annotators, two items; D reverses the others on item 1 and disagrees on item 2.
    A on item 1: others' mean ranks [5/3, 2, 7/3] decide all 3 pairs, A agrees on 3. On item 2
    the others' mean [4/3, 1, 5/3] decide 3 pairs; A's tie on the first counts against: 2 of 3.
    D: the others agree, [1, 2, 3] (3 decided, D agrees on 0) and [1, 1, 2] (2 decided, 0)."""
    by_item = {
        1: {"A": [1, 2, 3], "B": [1, 2, 3], "C": [1, 2, 3], "D": [3, 2, 1]},
        2: {"A": [1, 1, 2], "B": [1, 1, 2], "C": [1, 1, 2], "D": [2, 1, 1]},
        3: {"A": [1, 2]},  # nobody to compare with: not counted
    }
    got = annotator_reliability(by_item)
    assert got["A"] == {"items": 2, "pairs": 6, "reliability": pytest.approx(5 / 6)}
    assert got["D"] == {"items": 2, "pairs": 5, "reliability": 0.0}
    weights = reliability_weights(got)
    assert weights["A"] == pytest.approx(2 / 3) and weights["D"] == 0.0


def test_reliability_finds_a_planted_random_annotator():
    """Three annotators rank by a hidden score with a little noise, one at random: the random one
    comes out near chance (0.5) and far below the others."""
    import random

    rng = random.Random(0)
    by_item = {}
    for item in range(60):
        truth = [rng.random() for _ in range(4)]
        rankings = {}
        for name in ("good-1", "good-2", "good-3"):
            noisy = [t + rng.gauss(0, 0.05) for t in truth]
            rankings[name] = dense_ranks(noisy)
        rankings["random"] = dense_ranks([rng.random() for _ in range(4)])
        by_item[item] = rankings
    got = annotator_reliability(by_item)
    assert min(got, key=lambda n: got[n]["reliability"]) == "random"
    assert 0.35 < got["random"]["reliability"] < 0.65
    assert all(got[n]["reliability"] > 0.85 for n in ("good-1", "good-2", "good-3"))
