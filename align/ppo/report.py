"""report.md for a PPO run: the SFT-vs-PPO table, training curves, and a few samples."""

from __future__ import annotations

from pathlib import Path

from align.report import curves_section, markdown_table
from align.rundir import atomic_write_text, read_metrics

CURVES = {
    "reward.png": ["rm_score", "gold_score", "score"],
    "kl.png": ["kl", "kl_coef", "approx_kl"],
    "lengths.png": ["response_length", "no_eos_share"],
    "losses.png": ["policy_loss", "value_loss", "explained_variance", "clipfrac"],
}


def source_curves(records: list[dict]) -> dict[str, list[str]]:
    """Each reward source's mean beside the aggregate, and held-out task accuracy beside the reward
    (a reward that rises while accuracy falls is being gamed)."""
    keys = {k for r in records for k in r}
    sources = sorted(k for k in keys if k.startswith("reward/") and not k.endswith(("_std", "_none_share")))
    heldout = sorted(k for k in keys if k.startswith("heldout/"))
    curves = {}
    if sources:
        curves["reward_sources.png"] = ["rm_score", *sources]
    if heldout:
        curves["task_accuracy.png"] = ["rm_score", *heldout]
    if "tool/turns" in keys:
        curves["tools.png"] = ["tool/turns", "tool/calls", "tool/errors", "tool/timeouts", "tool/malformed"]
    return curves


def transcripts_section(samples: list[dict], count: int = 3) -> list[str]:
    """A few multi-turn episodes as the model lived them: each turn, each tool call's answer, the reward."""
    episodes = [s for s in samples if s.get("transcript")][-count:]
    if not episodes:
        return []
    lines = [f"## Episodes (step {episodes[-1]['step']})", ""]
    for n, sample in enumerate(episodes, start=1):
        lines += [f"### Episode {n}: reward {sample['rm_score']:.4g}", "", f"**user**: {sample['prompt']}", ""]
        for message in sample["transcript"]:
            lines += [f"**{message['role']}**:", "", "```text", message["content"].strip() or "(empty)", "```", ""]
    return lines


def comparison_section(figures: dict, name: str = "ppo", label: str = "PPO") -> list[str]:
    """The SFT-vs-tuned table of a `compare_policies` result (PPO, GRPO, RLOO, DPO alike)."""
    rows = []
    accuracy = sorted({m for side in ("sft", name) for m in figures[side] if m.startswith(("accuracy_", "tool_"))})
    for metric in (
        "rm_mean",
        "gold_mean",
        "right_share",
        "polite_share",
        *accuracy,
        "response_length",
        "kl_to_reference",
    ):
        if metric in figures["sft"] or metric in figures[name]:
            rows.append({"metric": metric, "SFT": figures["sft"].get(metric, ""), label: figures[name].get(metric, "")})
    lines = [f"Held-out prompts: {figures['prompts']}", "", markdown_table(rows), ""]
    wins = []
    if "win_rate_rm" in figures:
        wins.append(f"win rate of {label} over SFT by the reward model: {figures['win_rate_rm']:.3f}")
    if "win_rate_gold" in figures:
        wins.append(f"by the gold scorer: {figures['win_rate_gold']:.3f}")
    return lines + (["; ".join(wins) + " (ties count half)", ""] if wins else [])


def write_report(run_dir: Path, figures: dict | None, samples: list[dict], summary: dict, method: str = "ppo") -> Path:
    records = read_metrics(run_dir / "metrics.jsonl")
    lines = [f"# align ppo report ({method})", ""]
    if figures:
        lines += comparison_section(figures, method, method.upper())
    lines += ["## Training", "", markdown_table([summary]), ""]
    lines += curves_section(records, {**CURVES, **source_curves(records)}, run_dir)
    if samples:
        lines += ["## Samples (held-out)", "", markdown_table(samples[:8]), ""]
    training_samples = read_metrics(run_dir / "samples.jsonl")  # same JSONL reader
    if training_samples:
        columns = [key for key in training_samples[-1] if key != "transcript"]
        lines += [
            f"## Training samples (step {training_samples[-1]['step']})",
            "",
            markdown_table(training_samples[-4:], columns),
            "",
        ]
        lines += transcripts_section(training_samples)
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
