"""report.md for `align reward`: headline table, curves, reward histograms, calibration, gaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from align.report import markdown_table, plot_bars, plot_curves
from align.rundir import atomic_write_text


def plot_histogram(chosen: torch.Tensor, rejected: torch.Tensor, path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    values = torch.cat([chosen, rejected])
    bins = torch.linspace(values.min().item(), values.max().item() + 1e-6, 31).tolist() if values.numel() else 10
    ax.hist(chosen.tolist(), bins=bins, alpha=0.6, label="chosen")
    ax.hist(rejected.tolist(), bins=bins, alpha=0.6, label="rejected")
    ax.set_xlabel("reward")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_calibration(curves: dict[str, list[dict]], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    for name, rows in curves.items():
        ax.plot([r["predicted"] for r in rows], [r["observed"] for r in rows], marker="o", label=name)
    ax.set_xlabel("predicted P(preferred)")
    ax.set_ylabel("observed frequency")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    run_dir: Path,
    summary: dict[str, Any],
    results: dict[str, dict],
    rewards: dict[str, tuple],
    metrics: list[dict],
    data_stats: dict,
) -> Path:
    """results: {"trained"|"untrained": {"validation": figures, "test": figures}}; rewards: name -> (chosen, rejected) on test."""
    lines = ["# align reward", ""]
    lines += ["## Summary", "", markdown_table([{"figure": k, "value": v} for k, v in summary.items()]), ""]
    rows = []
    for model, splits in results.items():
        for split, fig in splits.items():
            row = {
                "model": model,
                "split": split,
                "pairs": fig.get("pairs"),
                "accuracy": fig.get("accuracy"),
                "kendall_tau": fig.get("kendall_tau", ""),
                "ece": fig["calibration"]["ece"],
            }
            if "model_gold_accuracy" in fig:
                row.update(
                    model_gold_accuracy=fig["model_gold_accuracy"],
                    annotator_gold_agreement=fig["annotator_gold_agreement"],
                )
            rows.append(row)
    lines += ["## Held-out figures", "", markdown_table(rows), ""]
    curves = plot_curves(
        metrics, ["loss", "accuracy", "eval_loss", "eval_accuracy"], run_dir / "curves.png", "training"
    )
    if curves:
        lines += ["## Training curves", "", "![curves](curves.png)", ""]
    split = "test" if any("test" in s for s in results.values()) else "validation"
    gap_groups = {
        m: {f"gap {k}": v["accuracy"] for k, v in s[split]["accuracy_by_gap"].items()}
        for m, s in results.items()
        if split in s
    }
    if gap_groups:
        plot_bars(gap_groups, run_dir / "accuracy_by_gap.png", f"{split} accuracy by rank gap")
        gap_rows = [
            {"model": m, **{k: f"{v['accuracy']:.3f} (n={v['pairs']})" for k, v in s[split]["accuracy_by_gap"].items()}}
            for m, s in results.items()
            if split in s
        ]
        lines += [
            f"## Accuracy by rank gap ({split})",
            "",
            "![gaps](accuracy_by_gap.png)",
            "",
            markdown_table(gap_rows),
            "",
        ]
    task_rows = [
        {"model": m, **{k: f"{v['accuracy']:.3f} (n={v['pairs']})" for k, v in s[split]["accuracy_by_task"].items()}}
        for m, s in results.items()
        if split in s and s[split].get("accuracy_by_task")
    ]
    if task_rows:
        lines += [f"## Accuracy by task ({split})", "", markdown_table(task_rows), ""]
    for name, (chosen, rejected) in rewards.items():
        plot_histogram(chosen, rejected, run_dir / f"hist_{name}.png", f"{name}: {split} rewards")
        lines += [
            f"## Rewards of chosen vs rejected ({name}, {split})",
            "",
            f"![hist](hist_{name}.png)",
            "",
            f"mean chosen {chosen.mean():.3f}, mean rejected {rejected.mean():.3f}",
            "",
        ]
    cal = {m: s[split]["calibration"]["bins"] for m, s in results.items() if split in s}
    if cal:
        plot_calibration(cal, run_dir / "calibration.png")
        lines += [f"## Calibration ({split})", "", "![calibration](calibration.png)", ""]
        for m, bins in cal.items():
            lines += [f"{m}:", "", markdown_table(bins), ""]
    lines += ["## Data", "", markdown_table([{"split": k, **v} for k, v in data_stats.items()]), ""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
