"""The demo pipeline's headline figures over several seeds: each seed's value, mean and min-max.

    python bench/seeds.py [--seeds 0 1 2] [--config configs/pipeline_demo.yaml] [--out runs/seeds]
    python bench/seeds.py --seeds 0 1 2 --report-only      # the table of runs already finished

Runs `align pipeline` once per seed on the cached demo world (world seed 0 for every run, so the
spread is the training's, not the world's): `training_seed`, `candidates.seed` and
`annotation.seed` all take the seed, so SFT, the sampled candidates, the simulated annotators'
noise, the reward model and every method change together. A finished run is not run again
(the pipeline resumes), so the table can be printed again without retraining.
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
sys.path.insert(0, str(ROOT))

from align.pipeline.methods import method_rows  # noqa: E402
from align.pipeline.state import PipelineState  # noqa: E402


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def figures_of(run: Path) -> dict[str, float]:
    """The headline figures of one finished pipeline dir (the ones README's tables quote)."""
    out: dict[str, float] = {}
    sft = _json(run / "sft" / "eval.json").get("models", {})
    for model, key in (("base", "exact_match"), ("tuned", "exact_match"), ("tuned", "forgetting_ratio")):
        if key in sft.get(model, {}):
            out[f"SFT {model if model == 'base' else 'model'} {key.replace('_', ' ')}"] = sft[model][key]
    reward = _json(run / "reward" / "eval.json")
    test = reward.get("models", {}).get("trained", {}).get("test", {})
    for key, name in (
        ("accuracy", "reward model pair accuracy"),
        ("model_gold_accuracy", "reward model vs gold"),
        ("annotator_gold_agreement", "annotators vs gold"),
    ):
        if key in test:
            out[name] = test[key]
    if "best_weights_from_step" in reward.get("summary", {}):
        out["reward: steps until the kept weights"] = reward["summary"]["best_weights_from_step"]
    steps = PipelineState.load(run).steps
    rows = method_rows(run, steps)
    if rows:
        out["SFT gold mean"] = rows[0]["sft gold_mean"]
        out["SFT right answers"] = rows[0].get("sft right_share")
    for row in rows:
        out[f"{row['method']} gold mean"] = row.get("gold_mean")
        out[f"{row['method']} right answers"] = row.get("right_share")
        out[f"{row['method']} KL to SFT"] = row.get("kl_to_sft")
    held = _json(run / "eval" / "eval.json").get("parts", {}).get("heldout", {})
    for system in ("sft", "sft+rag"):
        if "contains" in held.get(system, {}):
            out[f"held-out facts, {system}"] = held[system]["contains"]
    for step, record in steps.items():
        if "seconds" in record:
            out[f"seconds: {step}"] = record["seconds"]
    return {k: float(v) for k, v in out.items() if v is not None}


def run_seed(config: str, seed: int, out: Path) -> Path:
    run = out / f"seed-{seed}"
    command = [sys.executable, "-m", "align", "pipeline", "--config", config]
    command += [f"training_seed={seed}", f"candidates.seed={seed}", f"annotation.seed={seed}"]
    command += [f"output.output_dir={run}"]
    if (run / "pipeline_state.json").is_file():
        command.append("--resume")
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)
    return run


def table(by_seed: dict[int, dict[str, float]]) -> str:
    seeds = sorted(by_seed)
    names = [n for n in by_seed[seeds[0]] if all(n in by_seed[s] for s in seeds)]
    head = f"| figure | {' | '.join(f'seed {s}' for s in seeds)} | mean | min - max |"
    lines = [head, "|" + " --- |" * (len(seeds) + 3)]
    for name in names:
        values = [by_seed[s][name] for s in seeds]
        fmt = "{:.0f}" if name.startswith(("seconds", "reward: steps")) else "{:.2f}"
        cells = " | ".join(fmt.format(v) for v in values)
        lines.append(
            f"| {name} | {cells} | {fmt.format(statistics.mean(values))} | "
            f"{fmt.format(min(values))} - {fmt.format(max(values))} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", default="configs/pipeline_demo.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "seeds")
    parser.add_argument("--report-only", action="store_true", help="print the table of finished runs, run nothing")
    args = parser.parse_args()

    by_seed = {}
    for seed in args.seeds:
        run = args.out / f"seed-{seed}" if args.report_only else run_seed(args.config, seed, args.out)
        by_seed[seed] = figures_of(run)
    print(f"\n{args.config}, world seed 0; training, candidate and annotator seeds as named\n")
    print(table(by_seed))


if __name__ == "__main__":
    main()
