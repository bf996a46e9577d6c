"""report.md for `align eval` / `align rag run`: one table and one bar chart per QA set, plus sample answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from align.benchmarks.report import benchmark_section
from align.report import markdown_table, plot_bars

TABLE_COLUMNS = (
    "system",
    "n",
    "exact_match",
    "token_f1",
    "rouge_l",
    "contains",
    "recall_at_k",
    "mrr",
    "mean_answer_words",
    "latency_s",
    "truncated",
)
CHART_METRICS = ("exact_match", "token_f1", "rouge_l", "contains", "recall_at_k", "mrr")


def eval_report(results: dict[str, Any], samples: dict[str, dict[str, list[dict]]], run_dir: Path, title: str) -> str:
    """Markdown for results = {"parts": {part: {system: figures}}, "retrieval": ..., "skipped": ...}."""
    lines = [f"# {title}", ""]
    retrieval = results.get("retrieval") or {}
    if retrieval:
        lines += [
            f"Retrieval: `{retrieval['retriever']}`, top_k={retrieval['top_k']}, relevance = `{retrieval['relevance']}`; "
            f"index {retrieval['index']['action']} ({retrieval['index']['documents']} documents, "
            f"{retrieval['index']['chunks']} chunks) at `{retrieval['index']['index_dir']}`.",
            "",
        ]
    for note in results.get("skipped", []):
        lines.append(f"- skipped: {note}")
    if results.get("skipped"):
        lines.append("")
    lines += summary_section(results["parts"], run_dir)
    lines += benchmark_section(results.get("benchmarks") or {}, run_dir)
    for part, systems in results["parts"].items():
        rows = [{"system": name, **figures} for name, figures in systems.items()]
        chart = plot_bars(
            {name: {m: figures[m] for m in CHART_METRICS if m in figures} for name, figures in systems.items()},
            run_dir / f"eval_{part}.png",
            title=part,
        )
        lines += [
            f"## {part}",
            "",
            markdown_table(rows, [c for c in TABLE_COLUMNS if any(c in r for r in rows)]),
            f"![{part}]({chart.name})",
            "",
        ]
        for system, examples in samples.get(part, {}).items():
            lines += [
                f"<details><summary>{system}: sample answers</summary>",
                "",
                markdown_table(examples, ["question", "answers", "prediction"]),
                "</details>",
                "",
            ]
    lines += (
        []
        if not results["parts"]
        else [
            "Metrics: exact match, token F1 and ROUGE-L take the best over the accepted answers; `contains` = the answer "
            "occurs in the output as whole words; recall@k and MRR score the retrieved passages (RAG systems only); "
            "latency is seconds per question (retrieval + generation, batch time / batch size).",
            "",
        ]
    )
    return "\n".join(lines)


def summary_section(parts: dict[str, dict[str, dict]], run_dir: Path, metric: str = "contains") -> list[str]:
    """One chart and table: each system's `metric` on every QA set (e.g. seen vs held-out facts)."""
    systems = list(dict.fromkeys(name for by_system in parts.values() for name, f in by_system.items() if metric in f))
    if not systems:  # retrieval only: nothing was generated
        return []
    groups = {name: {part: parts[part][name][metric] for part in parts if name in parts[part]} for name in systems}
    chart = plot_bars(groups, run_dir / "eval_summary.png", title=f"{metric} by QA set")
    rows = [{"system": name, **{part: groups[name].get(part, "") for part in parts}} for name in systems]
    return [
        f"## Summary: `{metric}` (answer found in the output) per QA set",
        "",
        markdown_table(rows),
        f"![summary]({chart.name})",
        "",
    ]
