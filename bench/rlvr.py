"""Verifiable rewards on the demo world, measured over seeds:

    python bench/rlvr.py [--seeds 0 1 2] [--steps 25] [--out runs/bench-rlvr]

A. GRPO with the contains_answer rule alone (no reward model) on the world's arithmetic and
   word-sorting prompts: held-out accuracy (greedy, the rule on the 23 test prompts of those
   tasks) of the SFT model and after GRPO.
B. GRPO on the whole task mix against the reward model alone, and against the reward model plus
   the rule (weight 1 each): right answers and gold score on held-out prompts (the demo world's
   gold rule), SFT vs tuned.
The SFT run (configs/sft_demo.yaml) and reward model (configs/reward_demo.yaml on it) are trained
once, under --out, and reused on later runs. Prints one row per run and the mean and range per arm.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASKS = ("arithmetic", "sort_words")
RULE = {"rule": "contains_answer", "weight": 1.0}


def prepare(out: Path, need_reward: bool = True) -> tuple[Path, Path, Path]:
    """(sft run, reward run, world): trained once under `out` (the reward model only when needed)."""
    import stages.reward
    import stages.sft
    from align.cli.common import build_config
    from align.demo import build_world

    world = build_world("demo", 0, progress=False)
    sft, reward = out / "sft", out / "reward"
    if not (sft / "final").is_dir():
        stages.sft.run(
            build_config("sft", "configs/sft_demo.yaml", [f"output.output_dir={sft}", "output.report_to=[none]"])
        )
    if need_reward and not (reward / "final").is_dir():
        overrides = [f"model.name_or_path={sft}", f"output.output_dir={reward}", "output.report_to=[none]"]
        stages.reward.run(build_config("reward", "configs/reward_demo.yaml", overrides))
    return sft, reward, world


def task_prompts(world: Path, out: Path) -> dict[str, Path]:
    files = {}
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (world / "preference" / f"{split}.jsonl").read_text().splitlines()]
        path = out / f"checkable_{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["task"] in TASKS))
        files[split] = path
    return files


def grpo(name: str, seed: int, steps: int, out: Path, overrides: list[str]) -> dict:
    import stages.ppo
    from align.cli.common import build_config

    run = out / f"{name}-s{seed}"
    base = [f"schedule.seed={seed}", f"schedule.steps={steps}", "schedule.save_steps=null", "output.report_to=[none]"]
    start = time.perf_counter()
    result = stages.ppo.run(
        build_config(
            "ppo",
            "configs/ppo_grpo_demo.yaml",
            [*base, f"output.output_dir={run}", "output.overwrite=true", *overrides],
        )
    )
    figures = json.loads((result.run_dir / "eval.json").read_text())
    return {"name": name, "seed": seed, "seconds": time.perf_counter() - start, **flatten(figures)}


def flatten(figures: dict) -> dict:
    return {
        f"{side}_{key}": value
        for side in ("sft", "grpo")
        for key, value in figures.get(side, {}).items()
        if isinstance(value, (int, float))
    }


def summary(rows: list[dict], keys: list[str]) -> None:
    for name in dict.fromkeys(r["name"] for r in rows):
        mine = [r for r in rows if r["name"] == name]
        parts = []
        for key in keys:
            values = [r[key] for r in mine if key in r]
            if values:
                parts.append(f"{key} {statistics.mean(values):.3f} [{min(values):.3f}, {max(values):.3f}]")
        print(f"{name} (seeds {', '.join(str(r['seed']) for r in mine)}): " + "; ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-rlvr"))
    parser.add_argument("--skip", choices=["A", "B"], default=None)
    parser.add_argument(
        "--kl-in",
        choices=("reward", "loss"),
        default="reward",
        help="where the KL penalty goes (loss: GRPO's form, k3; in the reward, a group whose answers are all "
        "wrong gets standardised KL noise as its advantages)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sft, reward, world = prepare(args.out, need_reward=args.skip != "B")
    files = task_prompts(world, args.out)
    rows = []
    common = [f"policy.name_or_path={sft}", "eval.max_prompts=64", f"kl.apply_to={args.kl_in}"]
    common += ["kl.estimator=k3"] if args.kl_in == "loss" else []
    tag = "" if args.kl_in == "reward" else "-kl-loss"
    if args.skip != "A":
        rule_only = [
            *common,
            "reward_model=null",
            "reward.sources=[{rule: contains_answer}]",
            f"data.train={files['train']}",
            f"data.test={files['test']}",
        ]
        for seed in args.seeds:
            rows.append(grpo(f"A-rule-checkable{tag}", seed, args.steps, args.out, rule_only))
            print(json.dumps(rows[-1]), flush=True)
    if args.skip != "B":
        for seed in args.seeds:
            rm = [*common, f"reward_model={reward}", "reward.sources=[{model: reward_model}, {rule: contains_answer}]"]
            rows.append(grpo(f"B-rm+rule-mix{tag}", seed, args.steps, args.out, rm))
            print(json.dumps(rows[-1]), flush=True)
            alone = [
                *common,
                f"reward_model={reward}",
                "reward.sources=[{model: reward_model}, {rule: contains_answer, weight: 0}]",
            ]
            rows.append(grpo(f"B-rm-alone-mix{tag}", seed, args.steps, args.out, alone))
            print(json.dumps(rows[-1]), flush=True)
    print()
    summary(
        rows,
        [
            "sft_accuracy_contains_answer",
            "grpo_accuracy_contains_answer",
            "sft_right_share",
            "grpo_right_share",
            "sft_gold_mean",
            "grpo_gold_mean",
            "grpo_kl_to_reference",
            "seconds",
        ],
    )


if __name__ == "__main__":
    main()
