"""The side-by-side of the alignment methods a pipeline ran (ppo, grpo, rloo, dpo), read from
each method's eval.json: the same SFT policy, the same held-out prompts, sampling and seed,
so every row's SFT column is the same and the differences are the methods'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from align.benchmarks.stats import mean_stderr

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


def leader_sentence(found: Leader) -> str:
    """The best method named with its gain, or, when its lead is within noise, said to be so."""
    best = found.best
    gain = (
        f"held-out gold score {best['sft gold_mean']:.2f} (SFT) -> {best['gold_mean']:.2f} "
        f"({best['gold_gain']:+.2f}) on {best['prompts']} prompts"
    )
    if found.clear:
        return f"Best alignment method: {best['method']}, {gain}"
    noise = (
        f"the standard error of the paired difference is {found.stderr:.2f}; a lead counts above two"
        if found.stderr is not None
        else "no per-prompt scores to tell them apart"
    )
    return (
        f"No method is clearly best: {best['method']} leads {found.runner_up['method']} by "
        f"{found.lead:.2f} gold, within noise ({noise}). {best['method']}: {gain}"
    )


def gains_per_prompt(root: Path, method: str) -> list[float] | None:
    """Each held-out prompt's gold gain: the method's answer's gold score minus the SFT answer's
    beside it (eval_samples.jsonl), in prompt order."""
    path = root / method / "eval_samples.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    pairs = [(row.get(f"gold_{method}"), row.get("gold_sft")) for row in rows]
    if not pairs or any(None in pair for pair in pairs):
        return None
    return [float(tuned) - float(sft) for tuned, sft in pairs]


@dataclass(frozen=True)
class Leader:
    """The method with the largest gold gain and whether its lead over the runner-up is more than noise:
    the lead is the mean over the held-out prompts of the difference between the two methods' gains
    on each (paired: the same prompts), and it counts when it exceeds two standard errors of that mean."""

    best: dict[str, Any]
    runner_up: dict[str, Any] | None = None
    lead: float | None = None
    stderr: float | None = None

    @property
    def clear(self) -> bool:
        if self.runner_up is None:
            return True
        return self.lead is not None and self.stderr is not None and self.lead > 2 * self.stderr


def leader(root: Path, rows: list[dict[str, Any]]) -> Leader | None:
    """The best method of `rows` and its lead over the next one (None without gold figures)."""
    scored = sorted((r for r in rows if r.get("gold_gain") is not None), key=lambda r: -r["gold_gain"])
    if not scored:
        return None
    if len(scored) == 1:
        return Leader(scored[0])
    best, runner_up = scored[0], scored[1]
    a, b = gains_per_prompt(root, best["method"]), gains_per_prompt(root, runner_up["method"])
    if a is None or b is None or len(a) != len(b):
        return Leader(best, runner_up, best["gold_gain"] - runner_up["gold_gain"], None)
    lead, stderr = mean_stderr([x - y for x, y in zip(a, b)])
    return Leader(best, runner_up, lead, stderr)


def gain_kind(row: dict[str, Any]) -> str | None:
    """One sentence on whether a method's gain is correctness or style (right answers vs polite openings)."""
    if row.get("right_share") is None or row.get("sft right_share") is None:
        return None
    points = round(100 * (row["right_share"] - row["sft right_share"]))
    if points >= 5:
        return f"Part of {row['method']}'s gain is correctness (right answers {points:+d} points)."
    polite = row.get("polite_share"), row.get("sft polite_share")
    if None not in polite and polite[0] - polite[1] >= 0.2:
        return (
            f"{row['method']}'s gain is style, not correctness: polite openings {polite[1]:.0%} -> {polite[0]:.0%}, "
            f"right answers {points:+d} points."
        )
    return f"{row['method']}'s gain is not in right answers ({points:+d} points)."
