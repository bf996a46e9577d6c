"""Getting more out of the same rankings (issue #16): Bradley-Terry pairs vs Plackett-Luce
lists at several annotator noise levels, and an unreliable annotator with and without
reliability weights. Prints one table: the reward model's held-out accuracy against the gold
rule, against the (noisy) test rankings, and the annotators' own agreement with gold.

    python bench/reward_rankings.py [--seeds 0] [--noise 0.2 0.5 1.0] [--parts losses annotators]
                                    [--backbone demo:demo/model] [--out runs/bench-reward-rankings]

Every run is `align reward --config configs/reward_demo.yaml` on the demo world (simulated
annotators over synthesized candidates; the backbone is the base model unless --backbone names
an SFT run), one process each, the seed for training and for the annotators alike.
- losses: loss bradley_terry vs plackett_luce, 3 annotators merged per item (the demo config);
- annotators: 4 annotators, not merged: all reliable (clean), the last one ranking at random
  (no weights), and the same with annotator_weights: reliability. A quarter of --epochs by
  default: four times the pairs of the merged runs, about the same number of steps; then each
  run sees about a quarter of its pairs, so the weighted run (a quarter of its pairs weigh ~0)
  learns from fewer distinct items than the clean one. --annotators-loss plackett_luce
  --annotators-epochs 1 trains every row on all its rankings once (as cheap as a quarter epoch
  of pairs).
--epochs (default 1, the demo config trains 2) is the same for every setting, so the rows compare.
A finished run is read back, not run again.
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


def settings(
    parts: list[str], noises: list[float], epochs: float, annotators_loss: str = "bradley_terry", annotators_epochs=None
) -> list[tuple[str, list[str]]]:
    out = []
    if "losses" in parts:
        for noise in noises:
            for loss in ("bradley_terry", "plackett_luce"):
                overrides = [f"simulate.noise={noise}", f"loss={loss}", f"training.num_epochs={epochs}"]
                out.append((f"noise {noise:g}, {loss}", overrides))
            # a ranking of 4 is 6 pairs, 12 sequences to score, but 4 for Plackett-Luce: 3x the
            # epochs scores as many sequences as the pairs' epochs (the same compute)
            same_compute = [f"simulate.noise={noise}", "loss=plackett_luce", f"training.num_epochs={3 * epochs}"]
            out.append((f"noise {noise:g}, plackett_luce, same compute", same_compute))
    if "annotators" in parts:
        four_epochs = epochs / 4 if annotators_epochs is None else annotators_epochs
        four = ["simulate.annotators=4", "aggregate_annotators=false", f"training.num_epochs={four_epochs}"]
        four.append(f"loss={annotators_loss}")
        tag = (
            "4 annotators"
            if annotators_loss == "bradley_terry" and annotators_epochs is None
            else (f"4 annotators ({annotators_loss} {four_epochs:g} epochs)")
        )
        out += [
            (f"{tag}, all reliable", four),
            (f"{tag}, 1 random, no weights", [*four, "simulate.random_annotators=1"]),
            (
                f"{tag}, 1 random, reliability weights",
                [*four, "simulate.random_annotators=1", "annotator_weights=reliability"],
            ),
        ]
    return out


def folder_of(name: str, seed: int, out: Path) -> Path:
    return out / f"{name.replace(' ', '_').replace(',', '')}-seed{seed}"


def clean_accuracy(run_dir: Path, clean_run: Path) -> float:
    """Pair accuracy on the clean run's test rankings (all four annotators reliable, merged): the
    random annotator's own test rankings would otherwise be part of what a model is judged on."""
    from align.reward.data import load_preferences
    from align.reward.pairs import rankings_to_pairs
    from align.reward.scorer import RewardScorer

    source = load_preferences(str(clean_run / "data" / "rankings_test.jsonl"), None, "auto", split="test")
    pairs, _ = rankings_to_pairs(source.rankings, aggregate=True)
    scorer = RewardScorer(run_dir, batch_size=64)
    chosen = scorer.score([p.prompt for p in pairs], [p.chosen for p in pairs])
    rejected = scorer.score([p.prompt for p in pairs], [p.rejected for p in pairs])
    return (chosen > rejected).float().mean().item()


def run(name: str, overrides: list[str], seed: int, backbone: str, out: Path) -> dict:
    folder = folder_of(name, seed, out)
    if not (folder / "eval.json").is_file():
        command = [sys.executable, "-m", "align", "reward", "--config", "configs/reward_demo.yaml"]
        command += [f"model.name_or_path={backbone}", *overrides, f"training.seed={seed}", f"simulate.seed={seed}"]
        command += [f"output.output_dir={folder}", "output.overwrite=true", "eval.compare_untrained=false"]
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads((folder / "eval.json").read_text())["summary"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.2, 0.5, 1.0])
    parser.add_argument("--parts", nargs="+", default=["losses", "annotators"], choices=["losses", "annotators"])
    parser.add_argument("--backbone", default="demo:demo/model")
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs of the merged runs (the demo config: 2)")
    parser.add_argument("--annotators-loss", default="bradley_terry", choices=["bradley_terry", "plackett_luce"])
    parser.add_argument(
        "--annotators-epochs",
        type=float,
        default=None,
        help="epochs of the annotator rows (default: a quarter of --epochs)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-reward-rankings")
    args = parser.parse_args()

    figures = ("test_trained_model_gold_accuracy", "test_trained_accuracy", "test_annotator_gold_agreement")
    rows = []
    for name, overrides in settings(args.parts, args.noise, args.epochs, args.annotators_loss, args.annotators_epochs):
        summaries = [run(name, overrides, seed, args.backbone, args.out) for seed in args.seeds]
        if name.startswith("4 annotators"):  # judged on the same clean test rankings
            for seed, summary in zip(args.seeds, summaries, strict=True):
                clean = folder_of(name.split(", ", 1)[0] + ", all reliable", seed, args.out)
                summary["test_trained_model_gold_accuracy"] = clean_accuracy(folder_of(name, seed, args.out), clean)
        values = {f: [s[f] for s in summaries if f in s] for f in figures}
        weights = summaries[0].get("annotator_weights")
        rows.append((name, values, weights))
    print(f"\nbackbone {args.backbone}, {args.epochs:g} epoch(s), seeds {args.seeds}; mean (min-max over seeds)\n")
    print("(annotator rows: 'RM vs gold' is on the clean run's test rankings, the same for the three)\n")
    print("| setting | RM vs gold | RM vs test rankings | annotators vs gold |")
    print("| --- | --- | --- | --- |")
    for name, values, weights in rows:
        cells = []
        for f in figures:
            v = values[f]
            cells.append(f"{statistics.mean(v):.3f}" + (f" ({min(v):.3f}-{max(v):.3f})" if len(v) > 1 else ""))
        print(f"| {name} | {' | '.join(cells)} |")
        if weights:
            print("|   weights | " + ", ".join(f"{n} {w['weight']:.2f}" for n, w in weights.items()) + " | | |")


if __name__ == "__main__":
    main()
