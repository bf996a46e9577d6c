"""Active selection (#16): the ensemble-disagreement math by hand, selection picks the planted
ambiguous items (and their disputed responses), and `align annotate generate --select` end to end
on the tiny world, with its bad inputs (exit 2, nothing stored lost)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_annotate_cli import run

from align.reward.uncertainty import choose_responses, item_uncertainty, pair_disagreement
from annotation_ui.select import select_items, select_random, select_uncertain
from annotation_ui.store import NewItem, Store


def binary_entropy(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_disagreement_is_the_mutual_information_of_the_order_by_hand():
    # two heads, two responses: head 0 says r0 - r1 = 2, head 1 says -2
    information = pair_disagreement(torch.tensor([[2.0, 0.0], [0.0, 2.0]]))
    p = 1 / (1 + math.exp(-2.0))
    expected = binary_entropy(0.5) - binary_entropy(p)  # mean P is 1/2; each head is sure
    assert information[0, 1].item() == pytest.approx(expected, abs=1e-5)
    assert information[1, 0].item() == pytest.approx(expected, abs=1e-5) and information[0, 0].item() == 0.0
    # heads that agree carry no disagreement, even when they agree it is a coin flip
    assert pair_disagreement(torch.tensor([[1.0, 1.0], [1.0, 1.0]]))[0, 1].item() == pytest.approx(0.0, abs=1e-6)
    assert pair_disagreement(torch.tensor([[3.0, 0.0], [3.0, 0.0]]))[0, 1].item() == pytest.approx(0.0, abs=1e-6)
    # the most it can be: heads sure in opposite directions
    assert pair_disagreement(torch.tensor([[30.0, 0.0], [0.0, 30.0]]))[0, 1].item() == pytest.approx(math.log(2), 1e-4)


def test_the_disputed_responses_are_the_ones_kept():
    # 4 responses; the heads agree on 0, 1 and 3 (far apart) and dispute 2 against 0 and 1
    rewards = torch.tensor([[0.0, 4.0, 6.0, 10.0], [0.0, 4.0, -2.0, 10.0], [0.0, 4.0, 6.0, 10.0]])
    assert choose_responses(pair_disagreement(rewards), 2) in ([0, 2], [1, 2])
    score, kept = item_uncertainty(rewards, 3)
    assert 2 in kept and len(kept) == 3 and score > 0
    assert item_uncertainty(rewards, 4)[1] == [0, 1, 2, 3]  # k >= n keeps every response


class PlantedScorer:
    """An 'ensemble' whose heads disagree only on the responses of the planted items."""

    path = "planted"

    def __init__(self, ambiguous: set[str], heads: int = 4):
        self.ambiguous, self.heads = ambiguous, heads

    def score_heads(self, prompts, responses):
        rows = []
        for prompt, response in zip(prompts, responses):
            value = float(len(response))
            spread = [3.0 * (-1) ** h for h in range(self.heads)] if prompt in self.ambiguous else [0.0] * self.heads
            rows.append([value + s * (response.endswith("?")) for s in spread])
        return torch.tensor(rows)


def pool(n: int = 10) -> list[NewItem]:
    return [
        NewItem(prompt=f"q{i}", responses=["a", "bb", "ccc?", "dddd"], external_id=f"id-{i}", meta={"seed": 0})
        for i in range(n)
    ]


def test_uncertainty_selection_picks_the_planted_ambiguous_items():
    planted = {"q3", "q7", "q8"}
    chosen = select_uncertain(pool(), budget=3, k=2, scorer=PlantedScorer(planted))
    assert {item.prompt for item in chosen} == planted
    assert all("ccc?" in item.responses and len(item.responses) == 2 for item in chosen)  # the disputed one
    assert all(item.meta["uncertainty"] > 0 and item.meta["selected_from"] == 4 for item in chosen)
    assert [i.meta["uncertainty"] for i in chosen] == sorted((i.meta["uncertainty"] for i in chosen), reverse=True)
    # the control: a seeded random subset, not the planted one
    control = select_random(pool(), budget=3, k=2, seed=0)
    assert len(control) == 3 and all(len(item.responses) == 2 for item in control)
    assert [i.external_id for i in control] == [i.external_id for i in select_random(pool(), 3, 2, seed=0)]
    assert len(select_items(pool(), "all", None, 2)) == 10


def test_a_single_head_cannot_be_asked():
    from align.errors import AlignInputError

    with pytest.raises(AlignInputError, match="one head; train it with `heads: 4`"):
        select_uncertain(pool(), budget=2, k=2, scorer=PlantedScorer(set(), heads=1))


# -- the command ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ensemble(tiny_world, tmp_path_factory) -> Path:
    """An untrained 4-head reward model on the tiny world's model (its random heads disagree)."""
    from align.config.common import ModelConfig
    from align.reward.model import load_backbone, save_reward_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ensemble") / "final"
    model, tokenizer, meta = load_backbone(ModelConfig(name_or_path=str(tiny_world / "model")), heads=4)
    save_reward_model(model, tokenizer, meta, folder)
    one = folder.parent / "one-head"
    model, tokenizer, meta = load_backbone(ModelConfig(name_or_path=str(tiny_world / "model")))
    save_reward_model(model, tokenizer, meta, one)
    return folder


def test_generate_selects_the_budget_where_the_ensemble_disagrees(repo_root, tmp_path, ensemble):
    config = str(repo_root / "configs" / "tiny" / "annotate.yaml")
    db, out = str(tmp_path / "ann.db"), tmp_path / "items.jsonl"
    argv = ["annotate", "generate", "--config", config, "--db", db, "--out", str(out), "-k", "2"]
    assert run(*argv, "--select", "uncertainty", "--budget", "2", "--reward-model", str(ensemble)) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(written) == 2 and all(len(r["responses"]) == 2 for r in written)
    assert all(r["meta"]["selected_from"] >= 2 and "uncertainty" in r["meta"] for r in written)
    assert written[0]["meta"]["uncertainty"] >= written[1]["meta"]["uncertainty"]
    assert Store(db).item_ids() == [r["id"] for r in written]  # stored most uncertain first: handed out first


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--select", "uncertainty", "--budget", "2"], "select: uncertainty needs a reward model to ask"),
        (["--select", "random", "--budget", "7"], "budget 7 is larger than the pool of 6 prompts"),
        (["--select", "random"], "select: random needs budget: N"),
        (["--select", "uncertainty", "--budget", "2", "--reward-model", "ONE"], "has one head"),
        (["--select", "uncertainty", "--budget", "2", "--reward-model", "MISSING"], "no such file"),
    ],
)
def test_bad_selection_exits_2_and_keeps_what_is_stored(repo_root, tmp_path, ensemble, capsys, flags, message):
    config = str(repo_root / "configs" / "tiny" / "annotate.yaml")
    db = str(tmp_path / "ann.db")
    Store(db).add_items([NewItem(prompt="kept", responses=["x", "y"], external_id="kept-1")])
    flags = [
        str(ensemble.parent / "one-head") if f == "ONE" else str(tmp_path / "nope") if f == "MISSING" else f
        for f in flags
    ]
    assert run("annotate", "generate", "--config", config, "--db", db, *flags) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert Store(db).item_ids() == ["kept-1"]
