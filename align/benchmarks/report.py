"""Benchmark figures for people: the systems x benchmarks table (eval.json and report.md), a chart,
and one sentence per benchmark for the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from align.report import markdown_table, plot_bars

LOWER_IS_BETTER = {"bits_per_byte", "word_perplexity", "token_perplexity"}


def systems_table(benchmarks: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, float | None]]:
    """{system: {benchmark: headline value}} from {benchmark: {system: result summary}}."""
    table: dict[str, dict[str, float | None]] = {}
    for bench, by_system in benchmarks.items():
        for system, result in by_system.items():
            figure = result["metrics"].get(result["headline"])
            table.setdefault(system, {})[bench] = figure["value"] if figure else None
    return table


def _cell(result: dict[str, Any]) -> str:
    if result.get("refused"):
        return "refused"
    figure = result["metrics"][result["headline"]]
    if result["headline"] in LOWER_IS_BETTER:
        return f"{figure['value']:.3f} ± {figure['stderr']:.3f}"
    return f"{100 * figure['value']:.1f} ± {100 * figure['stderr']:.1f}"


def benchmark_section(benchmarks: dict[str, dict[str, dict[str, Any]]], run_dir: Path) -> list[str]:
    """Markdown: the table (accuracy in percent ± standard error; bits per byte, lower is better),
    a chart of the accuracies, each benchmark's protocol and any refusal with its reason."""
    if not benchmarks:
        return []
    systems = list(dict.fromkeys(s for by_system in benchmarks.values() for s in by_system))
    header = {b: f"{b} ({next(iter(r.values()))['headline']})" for b, r in benchmarks.items()}
    rows = [{"system": s, **{header[b]: _cell(r[s]) if s in r else "" for b, r in benchmarks.items()}} for s in systems]
    lines = ["## Public benchmarks", "", markdown_table(rows, ["system", *header.values()]), ""]
    accuracies = {
        s: {b: v for b, v in figures.items() if v is not None and _headline(benchmarks, b) not in LOWER_IS_BETTER}
        for s, figures in systems_table(benchmarks).items()
    }
    if any(accuracies.values()):
        chart = plot_bars(accuracies, run_dir / "eval_benchmarks.png", title="public benchmarks (higher is better)")
        lines += [f"![public benchmarks]({chart.name})", ""]
    lines += ["Protocols:", ""]
    for bench, by_system in benchmarks.items():
        result = next(iter(by_system.values()))
        lines.append(f"- **{bench}**: {protocol_sentence(result['protocol'])}")
        lines += [f"  - {s}: refused: {r['refused']}" for s, r in by_system.items() if r.get("refused")]
    return lines + [""]


def _headline(benchmarks: dict, bench: str) -> str:
    return next(iter(benchmarks[bench].values()))["headline"]


def protocol_sentence(protocol: dict[str, Any]) -> str:
    sample = (
        f"a seeded sample of {protocol['n']} of {protocol['of']} items (seed {protocol['sample_seed']})"
        if protocol.get("sample_seed") is not None
        else f"all {protocol['n']} items"
    )
    parts = [sample, f"{protocol['shots']}-shot" if protocol["kind"] != "perplexity" else "rolling log-likelihood"]
    parts.append("chat template" if protocol["chat"] else "raw text")
    if protocol.get("max_new_tokens"):
        parts.append(f"greedy, at most {protocol['max_new_tokens']} new tokens")
    if protocol.get("stop"):
        parts.append("stops at " + ", ".join(repr(s) for s in protocol["stop"]))
    if protocol.get("normalisation"):
        parts.append(protocol["normalisation"])
    if protocol.get("checker") and protocol["checker"] not in ("gsm8k", "math"):
        parts.append(protocol["checker"])
    return "; ".join(parts) + "."


def benchmark_sentences(benchmarks: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """'gsm8k (exact_match, 200 items): sft 3.0%, base 1.5%.' best first, for the terminal."""
    out = []
    for bench, by_system in benchmarks.items():
        scored = {s: r for s, r in by_system.items() if not r.get("refused")}
        if not scored:
            continue
        first = next(iter(scored.values()))
        metric = first["headline"]
        values = {s: r["metrics"][metric]["value"] for s, r in scored.items()}
        order = sorted(values, key=values.get, reverse=metric not in LOWER_IS_BETTER)
        shown = ", ".join(
            f"{s} {values[s]:.3f}" if metric in LOWER_IS_BETTER else f"{s} {100 * values[s]:.1f}%" for s in order
        )
        out.append(f"{bench} ({metric}, {first['protocol']['n']} items): {shown}.")
    return out


def change_sentence(benchmarks: dict[str, dict[str, dict[str, Any]]], system: str, reference: str) -> str | None:
    """'grpo vs sft: better on ifeval +2.0 (± 1.8), ...; worse on hellaswag -1.5 (± 3.2); no change beyond two
    standard errors.' Accuracies in points, bits per byte as is (lower is better); the ± is the two
    figures' standard errors combined as if independent (the items are shared, so it is conservative)."""
    better, worse, clear = [], [], []
    for bench, by_system in benchmarks.items():
        a, b = by_system.get(system), by_system.get(reference)
        if not a or not b or a.get("refused") or b.get("refused"):
            continue
        metric = a["headline"]
        scale = 1 if metric in LOWER_IS_BETTER else 100
        fa, fb = a["metrics"][metric], b["metrics"][metric]
        diff = scale * (fa["value"] - fb["value"])
        spread = scale * (fa["stderr"] ** 2 + fb["stderr"] ** 2) ** 0.5
        gain = -diff if metric in LOWER_IS_BETTER else diff
        text = f"{bench} {diff:+.{3 if scale == 1 else 1}f} (± {spread:.{3 if scale == 1 else 1}f})"
        (better if gain > 0 else worse if gain < 0 else []).append(text)
        if spread and abs(diff) > 2 * spread:
            clear.append(f"{bench} ({'better' if gain > 0 else 'worse'})")
    if not better and not worse:
        return None
    parts = []
    if better:
        parts.append("better on " + ", ".join(better))
    if worse:
        parts.append("worse on " + ", ".join(worse))
    beyond = "beyond two standard errors: " + ", ".join(clear) if clear else "no change beyond two standard errors"
    return f"{system} vs {reference}: " + "; ".join(parts) + f"; {beyond}."


def tax_section(benchmarks: dict[str, dict[str, dict[str, Any]]], methods: list[str]) -> list[str]:
    """The pipeline report's alignment tax: each system on each benchmark, then what SFT changed
    against the base model and what each method changed against SFT, in sentences."""
    systems = [s for s in ("base", "sft", *methods) if any(s in by_system for by_system in benchmarks.values())]
    if not systems:
        return []
    rows = []
    for bench, by_system in benchmarks.items():
        metric = next(iter(by_system.values()))["headline"]
        rows.append(
            {"benchmark": f"{bench} ({metric})", **{s: _cell(by_system[s]) if s in by_system else "" for s in systems}}
        )
    lines = [
        "## What each method gained and cost on public benchmarks",
        "",
        markdown_table(rows, ["benchmark", *systems]),
        "",
    ]
    pairs = [("sft", "base")] + [(m, "sft") for m in methods]
    lines += [f"- {s}" for s in (change_sentence(benchmarks, a, b) for a, b in pairs) if s]
    protocols = {b: protocol_sentence(next(iter(r.values()))["protocol"]) for b, r in benchmarks.items()}
    lines += ["", "<details><summary>protocols</summary>", ""]
    lines += [f"- **{b}**: {p}" for b, p in protocols.items()]
    return lines + ["</details>", ""]
