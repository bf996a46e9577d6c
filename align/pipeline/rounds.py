"""The rounds of the feedback loop, read from what each round's steps wrote: how many rankings
the round added and had in all, how its items were chosen, the reward model's gold accuracy,
and the policy's held-out gold score at the round's start and end (the same held-out prompts,
sampling and seed every round, so the rows compare)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from align.pipeline.methods import METHODS, comparison_of


def round_key(name: str, round_: int) -> str:
    """A step's name in state and on disk: round 1 keeps the plain name, later rounds add -r<N>."""
    return name if round_ == 1 else f"{name}-r{round_}"


def round_keys(name: str, present: Callable[[str], bool]) -> list[str]:
    """A step's key in every round it ran: the plain name (round 1), then name-r2, name-r3, ...
    as long as `present(key)` says that round's step is there."""
    keys = [name]
    while present(round_key(name, len(keys) + 1)):
        keys.append(round_key(name, len(keys) + 1))
    return keys


def round_rows(root: Path, steps: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per finished round; empty for a one-round pipeline."""
    if "annotation-r2" not in steps:
        return []
    method = next((m for m in METHODS if m in steps), None)
    rows, before = [], 0
    for r in range(1, len(round_keys("annotation", steps.__contains__)) + 1):

        def outputs(name: str, r: int = r) -> dict[str, Any]:
            return steps.get(round_key(name, r), {}).get("outputs", {})

        total = outputs("annotation").get("rankings", 0)
        row: dict[str, Any] = {
            "round": r,
            "items": outputs("candidates").get("items"),
            "selected by": outputs("candidates").get("select", "all"),
            "new rankings": total - before,
            "rankings so far": total,
            "RM vs gold": (outputs("reward").get("metrics") or {}).get("test_trained_model_gold_accuracy"),
        }
        before = total
        figures = comparison_of(root, method, round_key(method, r)) if method else None
        if figures is not None:
            # a round starts where the last one ended (its eval's "sft" column is its KL reference)
            start = figures["sft"] if not rows else {k: rows[-1].get(k) for k in ("gold_mean", "right_share")}
            end = figures[method]
            row |= {"method": method, "prompts": figures["prompts"]}
            for key in ("gold_mean", "right_share"):
                if key in end:
                    row[f"start {key}"], row[key] = start.get(key), end[key]
            row["kl_to_reference"] = end.get("kl_to_reference")
        rows.append({k: v for k, v in row.items() if v is not None})
    return rows


def rounds_sentence(rows: list[dict[str, Any]]) -> str | None:
    """'2 rounds (400 rankings in all): held-out gold 1.55 -> 1.90 -> 2.10 ...'."""
    scored = [r for r in rows if r.get("gold_mean") is not None]
    if len(scored) < 2:
        return None
    path = " -> ".join(f"{x:.2f}" for x in [scored[0]["start gold_mean"], *(r["gold_mean"] for r in scored)])
    last = rows[-1]
    return (
        f"{len(rows)} rounds of {last['method']} ({last['rankings so far']} rankings in all, later rounds' items "
        f"selected by {last['selected by']}): held-out gold {path} on {last['prompts']} prompts."
    )
