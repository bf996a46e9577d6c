"""Does a reward backbone know what its reward model must check, and can the head read it?

    python bench/reward_knowledge.py                                    # runs/sft-demo, demo world
    python bench/reward_knowledge.py --reward-run runs/reward-demo      # + the trained reward model
    python bench/reward_knowledge.py --backbone demo:demo/model --world demo:tiny/

A diagnostic for the reward model's right-vs-wrong accuracy (README, `align reward`), not a
speed figure. For the world's fact-QA and arithmetic preference prompts it builds the minimal
pairs the demo's near-miss candidates make: one response with the right answer, one with a
plausible wrong one (another colour, a sum off by one), worded alike, in SFT's sentence form
("Sure! The trade of X is baking.") and as a bare answer ("baking"). For each it prints the
share of pairs ranked right by:

- lm: the backbone as a language model (higher log-likelihood of the whole text): the
  knowledge is in the model;
- probe: logistic regression on the backbone's hidden state at the last token, the very
  feature the reward head reads; fit on the training prompts' pairs, scored on the test
  prompts' (is the knowledge readable where the head looks?);
- reward: a trained reward model on the same pairs (--reward-run).

The texts are encoded exactly as the reward model encodes them (align.reward.text.encode).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from align.config.common import ModelConfig
from align.demo import resolve_if_demo_ref
from align.models import load_causal_lm, load_tokenizer, resolve_model_path
from align.reward.demo_data import (
    near_miss,
    read_prompt_rows,
    sentence_template,
    styled,
)
from align.reward.text import encode

TASKS = ("fact_qa", "arithmetic")
FORMS = ("sentence", "bare")


def minimal_pairs(rows: list[dict], per_row: int, seed: int) -> list[dict]:
    """{task, form, prompt, right, wrong} for every row of TASKS that has a near miss."""
    rng = random.Random(seed)
    pairs = []
    for row in rows:
        if row.get("task") not in TASKS:
            continue
        template = sentence_template(row)
        for _ in range(per_row):
            wrong = near_miss(row, rng)
            if wrong is None:
                continue
            for form in FORMS:
                style = "polite" if form == "sentence" else "plain"
                pairs.append(
                    {
                        "task": row["task"],
                        "form": form,
                        "prompt": row["prompt"],
                        "right": styled(row["reference"], style, "Sure!", "", template),
                        "wrong": styled(wrong, style, "Sure!", "", template),
                    }
                )
    return pairs


@torch.no_grad()
def lm_features(model, tokenizer, prompt: str, response: str) -> tuple[float, torch.Tensor]:
    """(log-likelihood of the encoded text, final hidden state at its last token)."""
    ids = torch.tensor([encode(tokenizer, prompt, response, "chat", 10**9)])
    out = model(input_ids=ids, output_hidden_states=True)
    logp = out.logits[0, :-1].float().log_softmax(-1).gather(1, ids[0, 1:, None]).sum().item()
    return logp, out.hidden_states[-1][0, -1].float()


def measure(model, tokenizer, pairs: list[dict]) -> dict[str, torch.Tensor]:
    """logp_right/logp_wrong (N,) and hidden_right/hidden_wrong (N, H), aligned with pairs."""
    out = {}
    for side in ("right", "wrong"):
        measured = [lm_features(model, tokenizer, p["prompt"], p[side]) for p in pairs]
        out[f"logp_{side}"] = torch.tensor([logp for logp, _ in measured])
        out[f"hidden_{side}"] = torch.stack([hidden for _, hidden in measured]) if measured else torch.empty(0)
    return out


def select(pairs: list[dict], features: dict[str, torch.Tensor], task: str, form: str) -> dict:
    """The pairs of one task and form, with their rows of every feature."""
    index = [i for i, p in enumerate(pairs) if p["task"] == task and p["form"] == form]
    return {"pairs": [pairs[i] for i in index], **{key: value[index] for key, value in features.items()}}


def fit_probe(
    right: torch.Tensor, wrong: torch.Tensor, l2: float = 1e-2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logistic regression (right = 1, wrong = 0) on standardised features: (weights, mean, std)."""
    x = torch.cat([right, wrong])
    y = torch.cat([torch.ones(len(right)), torch.zeros(len(wrong))])
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / std
    weights = torch.zeros(x.shape[1] + 1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=300)

    def closure():
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ weights[:-1] + weights[-1], y) + l2 * weights[:-1].pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach(), mean, std


def probe_score(features: torch.Tensor, probe) -> torch.Tensor:
    weights, mean, std = probe
    return ((features - mean) / std) @ weights[:-1] + weights[-1]


def share(better: list[bool]) -> str:
    return f"{sum(better) / len(better):.3f}" if better else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="runs/sft-demo", help="causal LM: run dir, folder, demo:<size>/model")
    parser.add_argument("--world", default="demo:demo/", help="demo world (holds preference/)")
    parser.add_argument("--reward-run", help="also score the pairs with this trained reward model")
    parser.add_argument("--per-row", type=int, default=3, help="near misses drawn per prompt")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    world = Path(resolve_if_demo_ref(args.world))
    backbone = resolve_model_path(resolve_if_demo_ref(args.backbone))
    config = ModelConfig(name_or_path=backbone)
    model, tokenizer = load_causal_lm(config).eval(), load_tokenizer(config)
    splits = {
        name: minimal_pairs(read_prompt_rows(world / "preference" / file), args.per_row, args.seed)
        for name, file in (("train", "train_with_sft_prompts.jsonl"), ("test", "test.jsonl"))
    }

    features = {name: measure(model, tokenizer, pairs) for name, pairs in splits.items()}
    scorer = None
    if args.reward_run:
        from align.reward.scorer import RewardScorer

        scorer = RewardScorer(args.reward_run)

    print(f"backbone {args.backbone}; world {world}; pairs: train {len(splits['train'])}, test {len(splits['test'])}")
    print(f"{'task':12s} {'form':9s} {'pairs':>5s} {'lm':>6s} {'probe':>6s} {'reward':>6s}")
    for task in TASKS:
        for form in FORMS:
            train, test = (select(splits[name], features[name], task, form) for name in ("train", "test"))
            tested = test["pairs"]
            if not tested:
                continue
            lm = (test["logp_right"] > test["logp_wrong"]).tolist()
            probe_better: list[bool] = []
            if len(train["pairs"]) >= 10:
                probe = fit_probe(train["hidden_right"], train["hidden_wrong"])
                probe_better = (
                    probe_score(test["hidden_right"], probe) > probe_score(test["hidden_wrong"], probe)
                ).tolist()
            reward_better: list[bool] = []
            if scorer is not None:
                prompts = [p["prompt"] for p in tested]
                rewards = scorer.score(prompts + prompts, [p["right"] for p in tested] + [p["wrong"] for p in tested])
                reward_better = (rewards[: len(tested)] > rewards[len(tested) :]).tolist()
            print(
                f"{task:12s} {form:9s} {len(tested):5d} {share(lm):>6s} {share(probe_better):>6s} {share(reward_better):>6s}"
            )


if __name__ == "__main__":
    sys.exit(main())
