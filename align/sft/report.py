"""report.md of an SFT run: loss curves, base-vs-tuned table, per-task figures, sample answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from align.report import markdown_table, plot_bars, plot_curves
from align.rundir import atomic_write_text

HEADLINE = ("val_loss", "val_perplexity", "exact_match", "token_f1", "rouge_l", "contains", "retention_perplexity")


def comparison_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per metric, one column per model (base, tuned)."""
    rows = []
    for metric in HEADLINE:
        if any(metric in r for r in results.values()):
            rows.append({"metric": metric, **{name: r.get(metric, "") for name, r in results.items()}})
    return rows


def per_task_rows(results: dict[str, dict[str, Any]], metric: str = "exact_match") -> list[dict[str, Any]]:
    tasks = sorted({t for r in results.values() for t in r.get("per_task", {})})
    return [
        {
            "task": t,
            "n": next(r["per_task"][t]["n"] for r in results.values() if t in r.get("per_task", {})),
            **{f"{name} {metric}": r.get("per_task", {}).get(t, {}).get(metric, "") for name, r in results.items()},
        }
        for t in tasks
    ]


def write_report(
    run_dir: Path,
    summary: dict[str, Any],
    results: dict[str, dict[str, Any]],
    samples: list[dict[str, str]],
    metrics: list[dict],
) -> Path:
    """Write report.md (+ loss.png, metrics.png) into the run dir; returns the report path."""
    lines = ["# SFT report", ""]
    lines += [f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in summary.items()]
    lines.append("")
    curve = plot_curves(metrics, ["loss", "eval_loss", "learning_rate"], run_dir / "loss.png", "training")
    if curve:
        lines += ["## Loss", "", "![loss curves](loss.png)", ""]
    if results:
        lines += ["## Base vs tuned", "", markdown_table(comparison_rows(results)), ""]
        bars = {
            name: {m: r[m] for m in ("exact_match", "token_f1", "rouge_l", "contains") if m in r}
            for name, r in results.items()
        }
        if any(bars.values()):
            plot_bars(bars, run_dir / "metrics.png", "held-out generation")
            lines += ["![generation metrics](metrics.png)", ""]
        tasks = per_task_rows(results)
        if tasks:
            lines += ["## Exact match per task", "", markdown_table(tasks), ""]
    if samples:
        lines += ["## Samples", "", markdown_table(samples), ""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
