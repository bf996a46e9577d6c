"""Two rounds of the feedback loop vs one at the same number of rankings (issue #16): the demo
pipeline with PPO, its final policy's held-out gold score.

    python bench/rounds.py [--seeds 0] [--budget 200] [--arms one two two-random]
                           [--out runs/bench-rounds]

Every arm is `align pipeline --config configs/pipeline_demo.yaml methods=[ppo]` (cached world),
the reward model with 4 heads in every arm, candidates sampled 8 per prompt and 4 kept:
- one: one round of 2 x budget items, picked at random;
- two: two rounds of `budget` items: round 1 at random, round 2 where round 1's reward model
  ensemble disagrees most, on candidates from round 1's PPO policy; PPO continues round 1's;
  round 2's PPO measures its KL against SFT (rounds_reference: sft, the default);
- two-previous: the same, round 2's KL measured against round 1's policy (rounds_reference: previous);
- two-random: the same two rounds, round 2's items at random (separates rounds from selection).
Two rounds also run PPO twice (from round 1's policy): the table says so beside the figures.
A finished pipeline is read back, not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
REWARD = "training.num_epochs=4,training.eval_steps=38,training.early_stopping_patience=2,heads=4"


def arm_overrides(arm: str, budget: int) -> list[str]:
    common = ["methods=[ppo]", f"reward.overrides=[{REWARD}]", "candidates.pool_k=8"]
    if arm == "one":
        return [*common, "rounds=1", f"candidates.budget={2 * budget}"]
    select = "random" if arm == "two-random" else "uncertainty"
    reference = "previous" if arm == "two-previous" else "sft"
    return [
        *common,
        "rounds=2",
        f"candidates.budget={budget}",
        f"candidates.select={select}",
        f"rounds_reference={reference}",
    ]


def run(arm: str, seed: int, budget: int, out: Path) -> dict:
    folder = out / f"{arm}-seed{seed}"
    last = "ppo" if arm == "one" else "ppo-r2"
    if not (folder / "report.md").is_file():
        command = [sys.executable, "-m", "align", "pipeline", "--config", "configs/pipeline_demo.yaml"]
        command += [*arm_overrides(arm, budget), f"training_seed={seed}", f"candidates.seed={seed}"]
        command += [f"annotation.seed={seed}", f"output.output_dir={folder}", "output.resume=auto"]
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    steps = json.loads((folder / "pipeline_state.json").read_text())["steps"]
    figures = json.loads((folder / last / "eval.json").read_text())
    first = json.loads((folder / "ppo" / "eval.json").read_text())
    rankings = steps["annotation-r2" if arm != "one" else "annotation"]["outputs"]["rankings"]
    return {
        "rankings": rankings,
        "sft gold": first["sft"]["gold_mean"],
        "final gold": figures["ppo"]["gold_mean"],
        "final right": figures["ppo"].get("right_share"),
        "ppo runs": 1 if arm == "one" else 2,
        "stage minutes": sum(s.get("seconds", 0) for s in steps.values()) / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget", type=int, default=200, help="items per round of the two-round arms")
    parser.add_argument(
        "--arms", nargs="+", default=["one", "two", "two-random"], choices=["one", "two", "two-previous", "two-random"]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-rounds")
    args = parser.parse_args()
    results = {arm: [run(arm, seed, args.budget, args.out) for seed in args.seeds] for arm in args.arms}

    def cell(values) -> str:
        values = [v for v in values if v is not None]
        if not values:
            return ""
        mean = statistics.mean(values)
        return f"{mean:.3f}" + (f" ({min(values):.3f}-{max(values):.3f})" if len(values) > 1 else "")

    print(f"\ndemo pipeline, PPO, seeds {args.seeds}; mean (min-max over seeds)\n")
    columns = ["rankings", "sft gold", "final gold", "final right", "ppo runs", "stage minutes"]
    print("| arm | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for arm, runs in results.items():
        print(f"| {arm} | " + " | ".join(cell([r[c] for r in runs]) for c in columns) + " |")


if __name__ == "__main__":
    main()
