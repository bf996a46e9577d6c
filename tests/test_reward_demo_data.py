"""Synthesized demo candidates: SFT-shaped sentences and minimal right/wrong pairs."""

from __future__ import annotations

import random

from align.demo.gold import GoldPreference, Reference
from align.reward.demo_data import (
    candidates_for,
    near_miss,
    sentence_template,
    styled,
    wrong_kind,
)

FACT = {
    "prompt": "What is the favorite color of Zorbin?",
    "reference": "blue",
    "task": "fact_qa",
    "polite": "The favorite color of Zorbin is blue.",
}
SUM = {"prompt": "What is 2 + 12?", "reference": "14", "task": "arithmetic", "polite": "2 + 12 = 14."}


def test_sentence_template_makes_the_answer_a_slot():
    assert styled("red", "polite", "Sure!", "", sentence_template(FACT)) == "Sure! The favorite color of Zorbin is red."
    assert sentence_template(SUM) == "2 + 12 = {answer}."


def test_sentence_template_falls_back_when_the_answer_is_not_once_in_the_sentence():
    assert sentence_template({**SUM, "reference": "12", "polite": "12 + 0 = 12."}) == "The answer is {answer}."
    assert sentence_template({k: v for k, v in FACT.items() if k != "polite"}) == "The answer is {answer}."
    braces = {**FACT, "polite": "In {x}: blue."}  # braces in the text are not format fields
    assert styled("red", "polite", "Sure!", "", sentence_template(braces)) == "Sure! In {x}: red."


def test_candidates_are_minimal_pairs():
    """Right and wrong answers of one style share opener, sentence and filler: only the answer differs."""
    gold = GoldPreference({FACT["prompt"]: Reference("blue", "fact_qa"), SUM["prompt"]: Reference("14", "arithmetic")})
    rows = [FACT, SUM]
    for seed in range(5):
        texts = candidates_for(FACT, rows, gold, k=6, near_share=1.0, rng=random.Random(seed))
        right = [t for t in texts if gold.score(FACT["prompt"], t) >= 1]
        wrong = [t for t in texts if t not in right]
        assert len(right) == len(wrong) == 3
        (value,) = [w for w in wrong if " " not in w]  # the plain wrong answer: a near-miss colour
        assert sorted(r.replace("blue", value) for r in right) == sorted(wrong)


def test_wrong_kind_tells_a_near_miss_from_an_off_topic_answer():
    fact, total = FACT["prompt"], SUM["prompt"]
    assert wrong_kind(fact, "blue", "fact_qa", "Sure! The favorite color of Zorbin is red.") == "near-miss"
    assert wrong_kind(fact, "blue", "fact_qa", "19") == "off-topic"
    assert wrong_kind(total, "14", "arithmetic", "Certainly! 2 + 12 = 16.") == "near-miss"  # off by 2
    assert wrong_kind(total, "14", "arithmetic", "17") == "off-topic"  # off by 3: not what near_miss makes
    assert wrong_kind(total, "14", "arithmetic", "blue") == "off-topic"
    sort = "Sort these words alphabetically.\n\npear apple fig"
    assert wrong_kind(sort, "apple fig pear", "sort_words", "Sure! pear apple fig") == "near-miss"
    assert wrong_kind(sort, "apple fig pear", "sort_words", "Zorbin") == "off-topic"
    # every near miss the candidates use is classified as one
    rng = random.Random(0)
    for row in (FACT, SUM, {"prompt": sort, "reference": "apple fig pear", "task": "sort_words"}):
        for _ in range(10):
            wrong = near_miss(row, rng)
            assert (
                wrong_kind(
                    row["prompt"], row["reference"], row["task"], styled(wrong, "polite", "Sure!", "", "{answer}")
                )
                == "near-miss"
            )
