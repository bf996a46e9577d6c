"""Rankings spent where the reward model is unsure vs at random (issue #16): a learning curve
of the reward model's accuracy against the demo world's gold rule over the number of rankings.

    python bench/active_selection.py [--seeds 0 1] [--sizes 100 200 300 480 800] [--noise 0.3]
                                     [--heads 4] [--epochs 4] [--out runs/bench-active-selection]

The pool: every prompt of preference/train_with_sft_prompts (1,376) with all six synthesized
candidates (align.reward.demo_data: a right and a wrong answer in three styles). One simulated
annotator (gold rule + gaussian noise) ranks k = 4 responses of each item put in front of it.
- random: the first N items of a seeded shuffle, 4 of 6 responses at random (the control);
- uncertainty: the same first 100 items, then each next batch (up to the next size) chosen by
  `annotation_ui.select.select_uncertain` (the code behind `align annotate generate --select
  uncertainty`) with the reward model trained on the rankings so far.
At every size a fresh reward model (base model backbone, `heads` bootstrapped heads, Plackett-
Luce, `epochs` epochs, no validation split) trains on all rankings so far, and is judged on the
86 test prompts with all six candidates ranked by the gold rule itself (1,290 pairs). Each run
is `align reward` in its own process; a finished run is read back, not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
K, POOL_K = 4, 6


def pool_items(world: Path):
    """Every train prompt with its six candidates, as annotation items (fixed: seed 0)."""
    from align.demo.gold import GoldPreference
    from align.reward.demo_data import candidates_for, read_prompt_rows
    from annotation_ui.store import NewItem

    rows = read_prompt_rows(world / "preference" / "train_with_sft_prompts.jsonl")
    gold, rng = GoldPreference.from_world(world), random.Random("active-pool")
    items = [
        NewItem(prompt=row["prompt"], responses=candidates_for(row, rows, gold, POOL_K, 0.3, rng), external_id=str(i))
        for i, row in enumerate(rows)
    ]
    return [item for item in items if len(item.responses) >= K]


def test_rankings(world: Path, out: Path) -> Path:
    """The test prompts with all candidates, ranked by the gold rule without noise."""
    from align.demo.gold import GoldPreference
    from align.reward.demo_data import read_prompt_rows, simulate_rankings, write_rankings

    path = out / "test_rankings.jsonl"
    if not path.is_file():
        rows = read_prompt_rows(world / "preference" / "test.jsonl")
        ranked = simulate_rankings(rows, GoldPreference.from_world(world), 1, 0.0, POOL_K, 0.3, 0, "test")
        write_rankings(ranked, path)
    return path


def rank(items, world: Path, noise: float, seed: int) -> list[dict]:
    """One simulated annotator's ranking of each item (seeded per item, so a ranking never changes)."""
    from align.demo.gold import GoldPreference

    gold = GoldPreference.from_world(world)
    rows = []
    for item in items:
        rng = random.Random(f"annotator-{seed}-{item.external_id}")
        ranks = gold.rank(item.prompt, item.responses, noise, rng)
        rows.append(
            {
                "prompt": item.prompt,
                "responses": item.responses,
                "ranks": ranks,
                "annotator": "sim-1",
                "item_id": item.external_id,
            }
        )
    return rows


def train(folder: Path, rankings: list[dict], test: Path, world: Path, args, seed: int) -> dict:
    """A fresh reward model on `rankings`; its eval summary."""
    if not (folder / "eval.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        data = folder.parent / f"{folder.name}.rankings.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rankings))
        config = yaml.safe_load((ROOT / "configs" / "reward_demo.yaml").read_text())
        config.pop("simulate")
        config["model"]["name_or_path"] = args.backbone
        config["data"] = {
            "train": str(data),
            "test": str(test),
            "format": "rankings",
            "validation_fraction": 0.0,
            "max_length": 160,
        }
        config |= {"loss": "plackett_luce", "heads": args.heads, "aggregate_annotators": False}
        config["training"] |= {"num_epochs": args.epochs, "seed": seed, "save_steps": 100000}
        config["eval"] = {"batch_size": 64, "gold_world": str(world), "compare_untrained": False}
        config["output"] = {"output_dir": str(folder), "overwrite": True}
        path = folder.parent / f"{folder.name}.yaml"
        path.write_text(yaml.safe_dump(config))
        print(f"$ align reward --config {path}  ({len(rankings)} rankings)", flush=True)
        subprocess.run(
            [sys.executable, "-m", "align", "reward", "--config", str(path)],
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
    return json.loads((folder / "eval.json").read_text())["summary"]


def curve(method: str, pool, sizes, world, test, args, seed: int) -> list[float]:
    from align.reward.scorer import RewardScorer
    from annotation_ui.select import select_random, select_uncertain

    order = list(pool)
    random.Random(f"order-{seed}").shuffle(order)
    chosen = select_random(order[: sizes[0]], sizes[0], K, seed)  # the same first batch for both
    accuracies, folder = [], None
    for size in sizes:
        if len(chosen) < size:
            seen = {item.external_id for item in chosen}
            rest = [item for item in order if item.external_id not in seen]
            if method == "random":
                chosen += select_random(rest[: size - len(chosen)], size - len(chosen), K, seed + size)
            else:
                chosen += select_uncertain(rest, size - len(chosen), K, RewardScorer(folder, batch_size=64))
        run_name = "random" if size == sizes[0] else method  # the first model is shared
        folder = args.out / f"seed{seed}" / f"{run_name}-{size}"
        summary = train(folder, rank(chosen, world, args.noise, seed), test, world, args, seed)
        accuracies.append(summary["test_trained_model_gold_accuracy"])
        print(f"seed {seed} {method} {size}: RM vs gold {accuracies[-1]:.3f}", flush=True)
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 300, 480, 800])
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--backbone", default="demo:demo/model")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-active-selection")
    args = parser.parse_args()
    from align.demo import build_world

    world = build_world(size="demo", seed=0, progress=False)
    args.out.mkdir(parents=True, exist_ok=True)
    pool, test = pool_items(world), test_rankings(world, args.out)
    print(f"pool {len(pool)} items x {POOL_K} candidates; k {K}; test {test}", flush=True)
    table = {
        m: [curve(m, pool, args.sizes, world, test, args, s) for s in args.seeds] for m in ("random", "uncertainty")
    }

    def cell(values: list[float]) -> str:
        mean = statistics.mean(values)
        return f"{mean:.3f}" + (f" ({min(values):.3f}-{max(values):.3f})" if len(values) > 1 else "")

    print(
        f"\nRM accuracy against the gold rule; noise {args.noise}, {args.heads} heads, {args.epochs:g} epochs, "
        f"backbone {args.backbone}, seeds {args.seeds}; mean (min-max over seeds)\n"
    )
    print("| rankings | " + " | ".join(str(s) for s in args.sizes) + " |")
    print("| --- |" + " --- |" * len(args.sizes))
    for method, runs in table.items():
        print(f"| {method} | " + " | ".join(cell([r[i] for r in runs]) for i in range(len(args.sizes))) + " |")
    target = statistics.mean(r[-1] for r in table["random"])
    reach = [s for i, s in enumerate(args.sizes) if statistics.mean(r[i] for r in table["uncertainty"]) >= target]
    share = f"{reach[0]} rankings ({reach[0] / args.sizes[-1]:.0%})" if reach else "not within the sizes run"
    print(f"\nrandom selection's {args.sizes[-1]}-ranking accuracy {target:.3f}: uncertainty reaches it at {share}")


if __name__ == "__main__":
    main()
