"""`align annotate stats`: progress, agreement and aggregation figures, as JSON and a report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from align.report import markdown_table, plot_bars
from align.rundir import atomic_write_json, atomic_write_text
from annotation_ui.agreement import agreement_report
from annotation_ui.store import Store


def collect(store: Store) -> dict[str, Any]:
    """Store overview + agreement over items ranked by more than one annotator."""
    by_item: dict[int, dict[str, list[int]]] = {}
    all_bad = 0
    for r in store.rankings():
        by_item.setdefault(r.item_id, {})[r.annotator] = r.ranks
        all_bad += r.all_bad
    overview = store.overview()
    overview["all_bad_flags"] = all_bad
    overview["agreement"] = agreement_report(by_item)
    return overview


def headline(stats: dict[str, Any]) -> dict[str, Any]:
    """The figures for the summary table."""
    agreement = stats["agreement"]
    return {
        "items": stats["items"],
        "items_complete": stats["items_complete"],
        "rankings": stats["rankings"],
        "quota": stats["quota"],
        "pairwise_agreement": agreement["pairwise_agreement"],
        "kendall_tau_b": agreement["kendall_tau_b"],
        "krippendorff_alpha_ordinal": agreement["krippendorff_alpha_ordinal"],
    }


def write_report(stats: dict[str, Any], folder: Path) -> Path:
    """stats.json, report.md and a per-annotator bar chart in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "stats.json", _finite(stats))
    per = stats["annotators"]
    rows = [{"annotator": name, **values} for name, values in per.items()]
    pairs = [
        {
            "annotators": " / ".join(p["annotators"]),
            "shared_items": p["shared_items"],
            "pairwise_agreement": _fmt(p["pairwise_agreement"]),
            "kendall_tau_b": _fmt(p["kendall_tau_b"]),
        }
        for p in stats["agreement"]["per_pair"]
    ]
    chart = (
        plot_bars(
            {name: {"done": v["done"], "skipped": v["skipped"]} for name, v in per.items()},
            folder / "annotators.png",
            title="rankings per annotator",
        )
        if per
        else None
    )
    text = [
        "# Annotation statistics",
        "",
        markdown_table([{k: _fmt(v) for k, v in headline(stats).items()}]),
        "",
        "## Annotators",
        "",
        markdown_table(rows) if rows else "(none)",
        "",
    ]
    if chart:
        text += ["![rankings per annotator](annotators.png)", ""]
    text += ["## Agreement per annotator pair", "", markdown_table(pairs) if pairs else "(no shared items yet)", ""]
    reliability = [
        {
            "annotator": name,
            "shared_items": r["items"],
            "decided_pairs": r["pairs"],
            "reliability": _fmt(r["reliability"]),
        }
        for name, r in stats["agreement"].get("per_annotator", {}).items()
    ]
    text += [
        "## Reliability per annotator",
        "",
        "Share of the response pairs the other annotators' consensus (their mean rank) decides on which this "
        "annotator agrees with it: about 0.5 is ranking at random, 1.0 agreeing with everyone.",
        "",
        markdown_table(reliability) if reliability else "(no shared items yet)",
        "",
    ]
    atomic_write_text(folder / "report.md", "\n".join(text))
    return folder / "report.md"


def _fmt(value: Any) -> Any:
    return (
        "n/a"
        if isinstance(value, float) and math.isnan(value)
        else round(value, 4)
        if isinstance(value, float)
        else value
    )


def _finite(obj: Any) -> Any:
    """JSON has no NaN: undefined figures (no overlap yet) become null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
