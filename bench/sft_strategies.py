"""Every fine-tuning strategy on the same data, steps and seed: cost, quality and forgetting.

    python bench/sft_strategies.py [--size demo|tiny] [--seed 0] [--steps N] [--modes full,lora,...] [--out DIR]

Runs `align sft` (configs/sft_demo.yaml: the demo world's SFT train/validation split, held-out
preference/test prompts, the corpus as retention text) once per mode, each in its own
process so its peak memory is its own, and prints one table: trainable parameters (count and
share), training wall time, peak resident memory, size of final/, validation loss, held-out
exact match overall and per task, and the forgetting ratio (retention perplexity after /
before). Every mode gets the same steps, batch, data order and seed; the learning rate is
each mode's own (LEARNING_RATES: what works for that kind of update, printed in the table).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]

# mode name -> overrides of configs/sft_demo.yaml (update.* and its learning rate)
STRATEGIES: dict[str, list[str]] = {
    "full": ["update.mode=full"],
    "partial": ["update.mode=partial", "update.partial.trainable_layers=2"],
    "lora": ["update.mode=lora"],
    "adapter-sequential": ["update.mode=adapter", "update.adapter.placement=sequential"],
    "adapter-parallel": ["update.mode=adapter", "update.adapter.placement=parallel"],
    "adapter-hybrid": ["update.mode=adapter", "update.adapter.placement=hybrid"],
    "prompt_tuning": ["update.mode=prompt_tuning", "update.prompt.num_virtual_tokens=16"],
    "prefix_tuning": ["update.mode=prefix_tuning", "update.prompt.num_virtual_tokens=16"],
    "feature_extraction": ["update.mode=feature_extraction"],
}
LEARNING_RATES = {
    "full": 2e-4,  # sft_full_demo.yaml: 5e-4 and up wipe what the base model knew
    "partial": 1e-3,
    "lora": 3e-3,  # sft_demo.yaml
    "adapter-sequential": 3e-3,
    "adapter-parallel": 3e-3,
    "adapter-hybrid": 3e-3,
    "prompt_tuning": 3e-2,  # virtual tokens need a large step (PEFT's examples use 3e-2)
    "prefix_tuning": 1e-2,
    "feature_extraction": 3e-3,
}


def run_one(mode: str, args, out: Path) -> dict:
    """One `align sft` run in this process; returns its figures (called in a child process)."""
    from align.cli.common import build_config
    from stages.sft import run

    config_file = ROOT / "configs" / ("sft_demo.yaml" if args.size == "demo" else "tiny/sft.yaml")
    overrides = STRATEGIES[mode] + [
        f"training.learning_rate={LEARNING_RATES[mode]}",
        f"training.seed={args.seed}",
        f"output.output_dir={out}",
        "output.report_to=[none]",
        "training.save_total_limit=1",
    ]
    if args.size == "tiny":
        overrides += [
            "model.name_or_path=demo:tiny/model",
            "eval.data=demo:tiny/preference/test.jsonl",
            "eval.reference_column=reference",
            "eval.retention_text=demo:tiny/corpus.txt",
        ]
    if args.steps:
        overrides.append(f"training.max_steps={args.steps}")
    started = time.perf_counter()
    run(build_config("sft", config_file, overrides))
    wall = time.perf_counter() - started
    report = json.loads((out / "eval.json").read_text())
    return {
        "mode": mode,
        "wall_s": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "saved_mb": folder_mb(out / "final"),
        "summary": report["summary"],
        "tuned": report["models"]["tuned"],
        "base": report["models"].get("base", {}),
    }


def folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def row(result: dict) -> dict:
    """One table row from a run's figures."""
    summary, tuned = result["summary"], result["tuned"]
    tasks = tuned.get("per_task", {})
    out = {
        "mode": result["mode"],
        "lr": LEARNING_RATES.get(result["mode"]),
        "trainable": f"{summary['trainable_parameters']:,}",
        "trainable %": round(100 * summary["trainable_parameters"] / max(summary["total_parameters"], 1), 3),
        "train s": round(summary["train_seconds"], 1),
        "peak MB": round(result["peak_rss_mb"]),
        "saved MB": round(result["saved_mb"], 2),
        "val loss": round(tuned.get("val_loss", float("nan")), 3),
        "EM": round(tuned.get("exact_match", float("nan")), 3),
    }
    for task in sorted(tasks):
        out[f"EM {task}"] = round(tasks[task]["exact_match"], 2)
    out["forgetting"] = round(tuned.get("forgetting_ratio", float("nan")), 2)
    return out


def markdown(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("demo", "tiny"), default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps", type=int, default=None, help="max_steps for every mode (default: the config's 3 epochs)"
    )
    parser.add_argument("--modes", default=",".join(STRATEGIES))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="sft-strategies-"))
    if args.child:  # one mode in this process: figures as JSON on the last line
        print(json.dumps(run_one(args.child, args, out / args.child)))
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in STRATEGIES]
    if unknown:
        sys.exit(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(STRATEGIES)}")
    results = []
    for mode in modes:
        print(f"== {mode}", file=sys.stderr, flush=True)
        command = [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--size",
            args.size,
            "--seed",
            str(args.seed),
            "--out",
            str(out),
        ] + (["--steps", str(args.steps)] if args.steps else [])
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            sys.exit(f"{mode} failed (exit {done.returncode})")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    (out / "results.json").write_text(json.dumps(results, indent=2))
    base = results[0]["base"]
    print(
        f"\nsft strategies on the {args.size} world, seed {args.seed}, {os.cpu_count()} CPU cores; "
        f"base model: val loss {base.get('val_loss', float('nan')):.3f}, EM {base.get('exact_match', float('nan')):.3f}; "
        f"runs in {out}\n"
    )
    print(markdown([row(r) for r in results]))


if __name__ == "__main__":
    main()
