"""Run an align stage by name: print its resolved config, import stages.<name> lazily (heavy
imports only when needed), run it, print its summary. The CLI and the pipeline both use it.
"""

from __future__ import annotations

import importlib

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from align.config import to_yaml
from align.config.common import Section
from align.distributed import is_main_process
from align.rundir import RunResult

console = Console(stderr=False)
VERBOSE = False
"""`align --verbose ...` (or -v anywhere on the line): the resolved config at start, every metric at the end."""


def print_config(config: Section) -> None:
    if is_main_process() and VERBOSE:
        console.rule(f"[bold]{type(config).__name__} (resolved)")
        console.print(Syntax(to_yaml(config), "yaml", theme="ansi_dark", background_color="default"))


def print_summary(stage: str, result: RunResult) -> None:
    """What the stage changed, in sentences, and where its files are; every metric with --verbose."""
    if not is_main_process():
        return
    from align.summary import closing_lines

    if VERBOSE:
        print_metric_table(stage, result)
    console.rule(f"[bold]align {stage}: done")
    for line in closing_lines(stage, result):
        console.print(line, soft_wrap=True, highlight=False)


def print_metric_table(stage: str, result: RunResult) -> None:
    table = Table(title=f"align {stage}: every metric", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.metrics.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    for key, path in result.artifacts.items():
        table.add_row(key, str(path))
    table.add_row("run dir", str(result.run_dir))
    console.print(table)


def run_stage(stage: str, config: Section, summary: bool = True) -> RunResult:
    """Run stages.<stage>.run(config); `summary` prints what it changed (a pipeline's own steps do not)."""
    print_config(config)
    result: RunResult = importlib.import_module(f"stages.{stage}").run(config)
    if is_main_process():
        from align.model_card import write_model_card

        write_model_card(stage, config, result)  # README.md in final/, where the stage saved a model
    if summary:
        print_summary(stage, result)
    return result
