"""bench/reward_knowledge.py: its minimal pairs and its linear probe (the figures it prints rest on them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

SPEC = importlib.util.spec_from_file_location(
    "reward_knowledge", Path(__file__).parents[1] / "bench" / "reward_knowledge.py"
)
knowledge = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(knowledge)

FACT = {
    "prompt": "What is the favorite color of Zorbin?",
    "reference": "blue",
    "task": "fact_qa",
    "polite": "The favorite color of Zorbin is blue.",
}
REWRITE = {"prompt": "Write in title case.\n\nthe fox", "reference": "The Fox", "task": "rewrite"}


def test_minimal_pairs_differ_only_in_the_answer():
    pairs = knowledge.minimal_pairs([FACT, REWRITE], per_row=2, seed=0)
    assert [(p["task"], p["form"]) for p in pairs] == [
        ("fact_qa", "sentence"),
        ("fact_qa", "bare"),
    ] * 2  # rewrite: not a task it checks
    sentence, bare = pairs[0], pairs[1]
    assert sentence["right"] == "Sure! The favorite color of Zorbin is blue." and bare["right"] == "blue"
    wrong_value = bare["wrong"]
    assert wrong_value != "blue" and sentence["wrong"] == sentence["right"].replace("blue", wrong_value)


def test_probe_separates_what_is_separable_and_not_what_is_not():
    gen = torch.Generator().manual_seed(0)
    right, wrong = torch.randn(200, 5, generator=gen), torch.randn(200, 5, generator=gen)
    right[:, 2] += 3.0  # one feature tells them apart
    probe = knowledge.fit_probe(right[:150], wrong[:150])
    better = knowledge.probe_score(right[150:], probe) > knowledge.probe_score(wrong[150:], probe)
    assert better.float().mean() > 0.95
    noise = knowledge.fit_probe(torch.randn(150, 5, generator=gen), torch.randn(150, 5, generator=gen))
    chance = knowledge.probe_score(right[150:, [0, 1, 3, 4, 0]], noise) > knowledge.probe_score(
        wrong[150:, [0, 1, 3, 4, 0]], noise
    )
    assert 0.2 < chance.float().mean() < 0.8
