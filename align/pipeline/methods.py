"""The side-by-side of the alignment methods a pipeline ran (ppo, grpo, rloo, dpo), read from
each method's eval.json: the same SFT policy, the same held-out prompts, sampling and seed,
so every row's SFT column is the same and the differences are the methods'.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METHODS = ("ppo", "grpo", "rloo", "dpo")


def comparison_of(root: Path, method: str, folder: str | None = None) -> dict[str, Any] | None:
    """The compare_policies figures a method's stage wrote (PPO-family: the whole eval.json; DPO: its
    comparison), in `folder` (default: the method's name; a later round's is e.g. ppo-r2)."""
    path = root / (folder or method) / "eval.json"
    if not path.is_file():
        return None
    figures = json.loads(path.read_text())
    figures = figures.get("comparison", figures) if method == "dpo" else figures
    return figures if method in figures and "sft" in figures else None


def method_rows(root: Path, steps: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per method that ran: gold, right / polite share, length, KL, RM score, wall time, gold per minute."""
    rows = []
    for method in METHODS:
        figures = comparison_of(root, method)
        if figures is None:
            continue
        sft, tuned = figures["sft"], figures[method]
        seconds = float(steps.get(method, {}).get("seconds", 0.0))
        row: dict[str, Any] = {"method": method, "prompts": figures["prompts"]}
        for key in ("gold_mean", "right_share", "polite_share", "response_length", "rm_mean"):
            if key in tuned:
                row[f"sft {key}"], row[key] = sft.get(key), tuned[key]
        row["kl_to_sft"] = tuned.get("kl_to_reference")
        row["win_rate_gold"] = figures.get("win_rate_gold")
        row["wall_s"] = round(seconds, 1)
        if "gold_mean" in tuned:
            gain = tuned["gold_mean"] - sft["gold_mean"]
            row["gold_gain"] = gain
            row["gold_gain_per_min"] = gain / (seconds / 60) if seconds > 0 else None
        rows.append(row)
    return rows


def best_method(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The method with the largest held-out gold gain (None without gold figures)."""
    scored = [r for r in rows if r.get("gold_gain") is not None]
    return max(scored, key=lambda r: r["gold_gain"]) if scored else None
