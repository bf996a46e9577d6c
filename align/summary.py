"""What a finished stage prints: what it changed, in sentences, and where its files are.

The same sentences as the pipeline report's headline (align/pipeline/headline.py), read from the
files the stage wrote; the full metric table stays in the run dir (and behind `--verbose`).
"""

from __future__ import annotations

import json
from pathlib import Path

from align.benchmarks.report import benchmark_sentences
from align.pipeline.headline import headline, percent, reward_sentence, sft_sentence
from align.pipeline.methods import METHODS, comparison_of
from align.rundir import RunResult


def method_sentence(run_dir: Path) -> str | None:
    """'GRPO: on 32 held-out prompts, gold score 0.37 (SFT) -> 0.92, ...' from an online or DPO run's eval.json."""
    found = ((m, comparison_of(run_dir.parent, m, run_dir.name)) for m in METHODS)
    method, figures = next(((m, f) for m, f in found if f is not None), (None, None))
    if figures is None:
        return None
    sft, tuned = figures["sft"], figures[method]
    parts = []
    for key, words in (("gold_mean", "gold score"), ("rm_mean", "reward-model score")):
        if key in sft and key in tuned:
            parts.append(f"{words} {sft[key]:.2f} (SFT) -> {tuned[key]:.2f}")
    if "right_share" in sft and "right_share" in tuned:
        parts.append(f"right answers {percent(sft['right_share'])} -> {percent(tuned['right_share'])}")
    accuracies = sorted(k for k in tuned if k.startswith("accuracy_"))
    for key in accuracies:  # without the SFT figure, the tuned one alone (not "0.00 -> x")
        name, after = key.removeprefix("accuracy_"), tuned[key]
        parts.append(f"{name} accuracy {sft[key]:.2f} -> {after:.2f}" if key in sft else f"{name} accuracy {after:.2f}")
    if "kl_to_reference" in tuned:
        parts.append(f"KL to SFT {tuned['kl_to_reference']:.2f}")
    if not parts:
        return None
    text = f"{method.upper()}: on {figures.get('prompts', '?')} held-out prompts, " + ", ".join(parts) + "."
    if tuned.get("right_share", 1.0) < sft.get("right_share", 0.0):
        text += " Warning: fewer right answers than SFT; whatever it gained, it paid for in correctness."
    return text


def eval_sentences(eval_json: Path) -> list[str]:
    """The best system on each QA set, by the share of answers that contain a reference answer, and
    every system on each public benchmark."""
    if not eval_json.is_file():
        return []
    out = []
    results = json.loads(eval_json.read_text())
    for part, systems in results.get("parts", {}).items():
        scored = {name: f["contains"] for name, f in systems.items() if isinstance(f, dict) and "contains" in f}
        if not scored:
            continue
        best = max(scored, key=scored.get)
        others = ", ".join(f"{name} {percent(v)}" for name, v in scored.items() if name != best)
        n = systems[best].get("n")
        out.append(
            f"{part}: {best} answers {percent(scored[best])}"
            + (f" of {n} questions" if n else "")
            + (f" (then {others})" if others else "")
            + "."
        )
    return out + benchmark_sentences(results.get("benchmarks") or {})


def stage_sentences(stage: str, result: RunResult) -> list[str]:
    root, folder = result.run_dir.parent, result.run_dir.name
    if stage == "sft":
        found = [sft_sentence(root, folder)]
    elif stage == "reward":
        found = [reward_sentence(root, folder)]
    elif stage in ("ppo", "dpo"):
        found = [method_sentence(result.run_dir)]
    elif stage in ("eval", "rag"):
        found = eval_sentences(result.run_dir / "eval.json")
    elif stage == "pipeline":
        state = result.run_dir / "pipeline_state.json"
        steps = json.loads(state.read_text()).get("steps", {}) if state.is_file() else {}
        found = [line.removeprefix("- ").replace("**", "") for line in headline(result.run_dir, steps) if line.strip()]
    else:
        found = []
    return [s for s in found if s]


def closing_lines(stage: str, result: RunResult) -> list[str]:
    """The sentences, then where the run dir and its report are."""
    lines = stage_sentences(stage, result)
    if not lines and "train_loss" in result.metrics:
        lines = [f"Training loss ended at {result.metrics['train_loss']:.3g}."]
    where = f"Run dir: {result.run_dir}"
    report = result.artifacts.get("report.md") or result.artifacts.get("report")
    if report is None and (result.run_dir / "report.md").is_file():
        report = result.run_dir / "report.md"
    if report is not None:
        where += f"; report: {report}"
    return lines + [where + " (every figure: eval.json and metrics.jsonl there; --verbose prints them here)."]
