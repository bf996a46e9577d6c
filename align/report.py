"""Small building blocks for each stage's report.md: curves as PNG, tables as Markdown.

matplotlib runs headless (Agg); every figure is also summarised in text, so the report
reads fine where images do not render.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(
    records: Sequence[dict[str, Any]], keys: Iterable[str], path: Path, title: str = "", x: str = "step"
) -> Path | None:
    """One panel per metric key present in the records (metrics.jsonl rows); None if none present."""
    keys = [k for k in keys if any(k in r for r in records)]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(r[x], r[key]) for r in records if key in r and x in r and r[key] is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None)
        ax.set_title(key)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves_section(records: Sequence[dict[str, Any]], curves: dict[str, list[str]], folder: Path) -> list[str]:
    """Markdown image lines for each curve file (name -> metric keys) that has data."""
    lines = []
    for name, keys in curves.items():
        if plot_curves(records, keys, folder / name, title=name.removesuffix(".png")):
            lines += [f"![{name}]({name})", ""]
    return lines


def plot_bars(groups: dict[str, dict[str, float]], path: Path, title: str = "") -> Path:
    """Grouped bar chart: groups = {system: {metric: value}}."""
    systems = list(groups)
    metrics = sorted({m for values in groups.values() for m in values})
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(metrics) * max(1, len(systems)) / 2), 3.6))
    for i, system in enumerate(systems):
        xs = [j + i * width for j in range(len(metrics))]
        ax.bar(xs, [groups[system].get(m, 0.0) for m in metrics], width, label=system)
    ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(metrics))], metrics)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_points(points: dict[str, tuple[float, float]], path: Path, xlabel: str, ylabel: str, title: str = "") -> Path:
    """Labelled points (name -> (x, y)), e.g. each method's gold score against its KL to SFT."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, (x, y) in points.items():
        ax.scatter([x], [y], s=40)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, labels: dict[str, str] | None = None
) -> str:
    """Rows of dicts as a Markdown table; floats to 4 significant digits, pipes escaped; `labels`
    gives a column a heading for people (the key stays the data's name)."""
    if not rows:
        return "_(no rows)_\n"
    columns = list(columns or rows[0].keys())
    labels = labels or {}

    def cell(value: Any) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(labels.get(c, c) for c in columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"
