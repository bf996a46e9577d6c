"""report.md for a DPO / KTO run: held-out pairs judged by the implicit reward, SFT vs tuned, curves."""

from __future__ import annotations

from pathlib import Path

from align.ppo.report import comparison_section
from align.report import curves_section, markdown_table
from align.rundir import atomic_write_text

CURVES = {
    "loss.png": ["loss", "eval_loss"],
    "rewards.png": ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"],
}


def write_report(run_dir: Path, summary: dict, figures: dict, samples: list[dict], records: list[dict]) -> Path:
    lines = [f"# align dpo report ({summary['loss']}, beta {summary['beta']})", ""]
    pairs = figures.get("pairs", {})
    if pairs:
        rows = [
            {
                "split": split,
                **{
                    k: fig[k]
                    for k in ("pairs", "accuracy", "kendall_tau", "model_gold_accuracy", "annotator_gold_agreement")
                    if k in fig
                },
            }
            for split, fig in pairs.items()
        ]
        lines += [
            "## Held-out pairs, ranked by the implicit reward beta * log(pi / pi_ref)",
            "",
            markdown_table(rows),
            "",
        ]
    if figures.get("comparison"):
        lines += ["## SFT vs tuned on held-out prompts", ""] + comparison_section(figures["comparison"], "dpo", "DPO")
    lines += ["## Training", "", markdown_table([summary]), ""]
    lines += curves_section(records, CURVES, run_dir)
    if samples:
        lines += ["## Samples (held-out)", "", markdown_table(samples[:8]), ""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
