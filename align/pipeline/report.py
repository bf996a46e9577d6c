"""The pipeline report: report.md plus a self-contained report.html (plots embedded).

It reads only what the stages wrote (metrics.jsonl, eval.json, predictions/, config.yaml),
so it can be rebuilt from a finished pipeline dir at any time.
"""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from align.benchmarks.report import tax_section
from align.pipeline.headline import headline, methods_sentence
from align.pipeline.methods import METHODS, Leader, leader, method_rows
from align.pipeline.progress import format_seconds
from align.pipeline.rounds import round_rows, rounds_sentence
from align.report import markdown_table, plot_curves, plot_points
from align.rundir import atomic_write_text, read_metrics

CURVES = {
    "sft": (["loss", "eval_loss"], "SFT loss"),
    "reward": (["loss", "eval_loss", "eval_accuracy"], "reward model training"),
    "ppo": (["rm_score", "gold_score", "kl", "kl_coef", "response_length"], "PPO"),
    "grpo": (["rm_score", "gold_score", "kl", "response_length"], "GRPO"),
    "rloo": (["rm_score", "gold_score", "kl", "response_length"], "RLOO"),
    "dpo": (["loss", "rewards/accuracies", "rewards/margins"], "DPO"),
}


def build_report(root: Path, steps: dict[str, dict[str, Any]], samples: int) -> Path:
    rows = method_rows(root, steps)  # read once: the headline, the methods table, the samples and next steps
    found = leader(root, rows)
    saved = root / "config.yaml"
    config = (yaml.safe_load(saved.read_text()) or {}) if saved.is_file() else {}  # the pipeline's, resolved
    lines = ["# align pipeline report", "", f"Pipeline dir: `{root}`", "", *_run_line(root, config), ""]
    lines += _headline(root, steps, rows)
    lines += _methods(root, rows, found)
    lines += _rounds(root, steps)
    lines += _wall_times(steps)
    lines += _curves(root)
    lines += _comparison(root)
    lines += _benchmarks(root, steps)
    lines += _samples(root, samples, found.best["method"] if found else None)
    lines += _next_steps(root, found, config)
    lines += _configs(root)
    text = "\n".join(lines) + "\n"
    atomic_write_text(root / "report.md", text)
    atomic_write_text(root / "report.html", to_html(text, root))
    return root / "report.md"


HEADLINE = {
    "sft": ["base_exact_match", "tuned_exact_match", "base_token_f1", "tuned_token_f1", "tuned_forgetting_ratio"],
    "reward": [
        "test_untrained_accuracy",
        "test_trained_accuracy",
        "test_trained_kendall_tau",
        "test_trained_model_gold_accuracy",
        "test_annotator_gold_agreement",
    ],
    "ppo": [
        "eval_sft_rm_mean",
        "eval_ppo_rm_mean",
        "eval_sft_gold_mean",
        "eval_ppo_gold_mean",
        "eval_ppo_kl_to_reference",
        "win_rate_rm",
        "win_rate_gold",
    ],
    # the RAG question (eval_demo.yaml's system names): knowledge in the weights vs in the documents
    "eval": [
        "seen/base+rag/contains",
        "seen/sft/contains",
        "heldout/sft/contains",
        "heldout/sft+rag/contains",
        "heldout/sft+rag/recall_at_k",
    ],
}


def _run_line(root: Path, config: dict[str, Any]) -> list[str]:
    """When, on what machine and with which seeds the pipeline ran: what a reader needs to compare runs."""
    env = json.loads((root / "env.json").read_text()) if (root / "env.json").is_file() else {}
    when = str(env.get("created") or datetime.now().isoformat())[:10]
    device = env.get("device") or {}
    machine = f"{device.get('count', 1)} x {device.get('name', '?')} ({device.get('kind', '?')})" if device else "?"
    cores = env.get("cpu_count")
    machine += f", {cores} CPU cores" if cores else ""
    seeds = [f"world {config.get('seed', 0)}"] if config.get("world") not in (None, "none") else []
    training = config.get("training_seed")
    if training is None:
        per_stage = []
        for stage in ("sft", "reward", *METHODS):
            stage_config = root / stage / "config.yaml"
            if stage_config.is_file():
                data = yaml.safe_load(stage_config.read_text()) or {}
                seed = (data.get("training") or data.get("schedule") or {}).get("seed")
                if seed is not None:
                    per_stage.append(f"{stage} {seed}")
        seeds += [f"training: {', '.join(per_stage)}"] if per_stage else []
    else:
        seeds.append(f"training {training}")
    seeds += [f"candidates {(config.get('candidates') or {}).get('seed', 0)}"]
    seeds += [f"annotators {(config.get('annotation') or {}).get('seed', 0)}"]
    sha = env.get("git_sha")
    code = f"align {env.get('packages', {}).get('align', '?')}" + (f" ({sha[:8]})" if sha else "")
    return [f"Run {when} on {machine}; {code}; seeds: {', '.join(seeds)}."]


def _headline(root: Path, steps: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    """What each stage changed, in sentences (with what went wrong); the figures follow, folded."""
    chosen, everything = [], []
    for step, info in steps.items():
        metrics = info.get("outputs", {}).get("metrics") or {}
        chosen += [{"stage": step, "figure": k, "value": metrics[k]} for k in HEADLINE.get(step, []) if k in metrics]
        everything += [{"stage": step, "figure": k, "value": v} for k, v in metrics.items()]
    if not everything:
        return []
    lines = ["## What each stage changed", "", *headline(root, steps, rows), ""]
    if chosen:
        lines += [
            '<details markdown="1"><summary>the headline figures</summary>',
            "",
            markdown_table(chosen, ["stage", "figure", "value"]),
            "</details>",
            "",
        ]
    return lines + [
        '<details markdown="1"><summary>all figures</summary>',
        "",
        markdown_table(everything, ["stage", "figure", "value"]),
        "</details>",
        "",
    ]


def _methods(root: Path, rows: list[dict[str, Any]], found: Leader | None) -> list[str]:
    """The alignment methods side by side, the best named in a sentence (or said to be within noise), and
    gold against KL."""
    if not rows:
        return []
    lines = ["## The alignment methods side by side", ""]
    sentence = methods_sentence(found, rows, kl=True)
    if sentence:
        lines += [sentence, ""]
    columns = [
        "method",
        "sft gold_mean",
        "gold_mean",
        "right_share",
        "polite_share",
        "response_length",
        "kl_to_sft",
        "rm_mean",
        "win_rate_gold",
        "wall_s",
        "gold_gain_per_min",
    ]
    lines += [markdown_table(rows, [c for c in columns if any(c in r for r in rows)], METHOD_LABELS), ""]
    points = {r["method"]: (r["kl_to_sft"], r["gold_mean"]) for r in rows if r.get("gold_mean") is not None}
    if points:
        points["sft"] = (0.0, rows[0]["sft gold_mean"])
        png = plot_points(
            points,
            root / "methods_frontier.png",
            "KL to the SFT policy (nats per response)",
            "held-out gold score",
            "gold score against KL",
        )
        lines += [f"![gold against KL]({png.name})", ""]
    return lines


def _rounds(root: Path, steps: dict[str, dict[str, Any]]) -> list[str]:
    """Each round of the feedback loop: its rankings, the reward model, the policy's gold at start and end."""
    rows = round_rows(root, steps)
    if not rows:
        return []
    lines = ["## Rounds of the feedback loop", ""]
    sentence = rounds_sentence(rows)
    if sentence:
        lines += [sentence, ""]
    lines += [
        "Each round starts from the last round's policy; `kl_to_reference` is its KL to the reference it was held "
        "to (`rounds_reference`: SFT by default), on the same held-out prompts every round.",
        "",
    ]
    columns = ["round", "items", "selected by", "new rankings", "rankings so far", "RM vs gold"]
    columns += ["start gold_mean", "gold_mean", "start right_share", "right_share", "kl_to_reference"]
    return lines + [markdown_table(rows, [c for c in columns if any(c in r for r in rows)]), ""]


def _wall_times(steps: dict[str, dict[str, Any]]) -> list[str]:
    rows = [
        {"stage": name, "status": info.get("status", "?"), "wall time": format_seconds(info.get("seconds", 0.0))}
        for name, info in steps.items()
    ]
    total = sum(info.get("seconds", 0.0) for info in steps.values())
    rows.append({"stage": "total", "status": "", "wall time": format_seconds(total)})
    return ["## Wall time per stage", "", markdown_table(rows), ""]


def _curves(root: Path) -> list[str]:
    lines = ["## Training curves", ""]
    for stage, (keys, title) in CURVES.items():
        records = read_metrics(root / stage / "metrics.jsonl")
        png = plot_curves(records, keys, root / f"{stage}_curves.png", title) if records else None
        if png is not None:
            lines += [f"### {title}", "", f"![{title}]({png.name})", ""]
    return lines


def _comparison(root: Path) -> list[str]:
    path = root / "eval" / "eval.json"
    if not path.is_file():
        return []
    results = json.loads(path.read_text())
    lines = ["## Side by side (align eval)", ""]
    for part, by_system in results.get("parts", {}).items():
        metrics = [
            m
            for m in ("exact_match", "contains", "token_f1", "rouge_l", "recall_at_k", "mrr", "answer_length")
            if any(m in f for f in by_system.values())
        ]
        rows = [{"system": name, **{m: figures.get(m, "") for m in metrics}} for name, figures in by_system.items()]
        lines += [f"### {part}", "", markdown_table(rows, ["system", *metrics]), ""]
    for chart in sorted((root / "eval").glob("eval_*.png")):
        name = chart.stem.removeprefix("eval_")
        lines += [f"![align eval: {name}](eval/{chart.name})", ""]
    return lines


def _benchmarks(root: Path, steps: dict[str, dict[str, Any]]) -> list[str]:
    """Public benchmarks of base, SFT and each method (the eval step's `benchmarks`)."""
    path = root / "eval" / "eval.json"
    if not path.is_file():
        return []
    benchmarks = json.loads(path.read_text()).get("benchmarks") or {}
    methods = [name for name in METHODS if name in steps]
    return tax_section(benchmarks, methods) if benchmarks else []


def _samples(root: Path, count: int, best: str | None) -> list[str]:
    """The same questions answered by the base model, SFT, the best method and SFT with retrieval."""
    folder = root / "eval" / "predictions"
    if count == 0 or not folder.is_dir():
        return []
    figures = root / "eval" / "eval.json"
    parts = json.loads(figures.read_text()).get("parts", {}) if figures.is_file() else {}
    systems = ["base", "sft", *([best] if best else []), "sft+rag"]
    lines = ["## Same questions, each system", ""]
    for part in sorted(parts):  # the QA sets (predictions/ also holds each benchmark's answers)
        by_system = {}
        for system in systems:
            path = folder / f"{system}.{part}.jsonl"
            if path.is_file():
                by_system[system] = [json.loads(line) for line in path.read_text().splitlines()[:count]]
        if not by_system:
            continue
        first = next(iter(by_system.values()))
        rows = [
            {
                "question": row["question"],
                "answer": " / ".join(row["answers"]),
                **{s: by_system[s][i]["prediction"] for s in by_system},
            }
            for i, row in enumerate(first)
        ]
        lines += [f"### {part}", "", markdown_table(rows), ""]
    return lines


def _next_steps(root: Path, found: Leader | None, config: dict[str, Any]) -> list[str]:
    """Where the trained models are and what a person does with them next, as commands to copy."""
    models = [p.parent for p in sorted(root.glob("*/final")) if p.parent.name != "reward"]
    methods = [m for m in models if m.name != "sft"]
    if not models:
        return []
    pick = next((m for m in methods if found and m.name == found.best["method"]), methods[-1] if methods else models[0])
    lines = [
        "## Next steps",
        "",
        "The trained models (align loads a run dir; `final/` in each loads with `from_pretrained`):",
        "",
    ]
    lines += [f"- {m.name}: `{m}`" for m in models]
    lines += [
        "",
        f"- Talk to them, each answering the same message: `align chat {' '.join(str(m) for m in models[:3])}`",
    ]
    lines += [f"- Run one where you run models (llama.cpp, Ollama): `align export {pick} --format gguf --dtype q8_0 --out {pick.name}.gguf`"]  # fmt: skip
    if (config.get("annotation") or {}).get("mode", "simulated") == "simulated":
        lines += [
            "- Rankings from people instead of simulated annotators: `annotation.mode: human` in the pipeline config; "
            "the run stops for `align annotate serve` and `--resume` goes on (the annotation guide in the docs)"
        ]
    if config.get("world") not in (None, "none"):
        lines += [
            "- Your model and your data: `align pipeline --config configs/my_data/pipeline.yaml` after naming them in "
            "its stage files"
        ]
    return lines + [""]


def _configs(root: Path) -> list[str]:
    lines = ["## Resolved configs", ""]
    for path in [root / "config.yaml", *sorted(root.glob("*/config.yaml"))]:
        if path.is_file():
            lines += [
                f'<details markdown="1"><summary>{path.relative_to(root)}</summary>',
                "",
                "```yaml",
                path.read_text().rstrip(),
                "```",
                "",
                "</details>",
                "",
            ]
    return lines


METHOD_LABELS = {
    "sft gold_mean": "gold score, SFT",
    "gold_mean": "gold score",
    "right_share": "right answers",
    "polite_share": "polite openings",
    "response_length": "length (tokens)",
    "kl_to_sft": "KL to SFT (nats)",
    "rm_mean": "reward model score",
    "win_rate_gold": "wins over SFT (gold)",
    "wall_s": "training time (s)",
    "gold_gain_per_min": "gold gain per minute",
}
"""Headings for the methods table (the glossary defines the figures behind them)."""


def to_html(markdown_text: str, root: Path) -> str:
    """Markdown -> one HTML file; images become data: URIs so the file travels alone."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code", "md_in_html"])

    def embed(match: re.Match) -> str:
        path = root / html.unescape(match.group(2))
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'{match.group(1)}data:image/png;base64,{data}"'

    body = re.sub(r'(<img[^>]*src=")([^"]+\.png)"', embed, body)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0;max-width:100%}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:90%;overflow-wrap:anywhere}"
        "img{max-width:100%}pre{background:#f5f5f5;padding:1em;overflow:auto}"
    )
    return f"<!doctype html><html><head><meta charset='utf-8'><title>align pipeline report</title><style>{style}</style></head><body>{body}</body></html>\n"
