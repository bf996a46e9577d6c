"""What every stage command does: load + validate the config, print it, run, summarise.

Kept apart from the typer wiring so stage commands stay one-liners and the behaviour
(exit codes, error messages) is the same for all of them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from align.config import STAGE_CONFIGS, check_input_paths, load_config, resolve_demo_refs, to_yaml
from align.config.common import Section
from align.distributed import is_main_process
from align.rundir import RunResult

console = Console(stderr=False)


def build_config(stage: str, config_path: Path | None, overrides: list[str], resume: bool = False, overwrite: bool = False) -> Section:
    """Config file + overrides (+ --resume/--overwrite flags) -> validated config with demo refs resolved."""
    extra = list(overrides)
    if resume:
        extra.append("output.resume=auto")
    if overwrite:
        extra.append("output.overwrite=true")
    config = load_config(STAGE_CONFIGS[stage], config_path, extra)
    check_input_paths(config, str(config_path or "command line"))
    return resolve_demo_refs(config)


def print_config(config: Section) -> None:
    if is_main_process():
        console.rule(f"[bold]{type(config).__name__} (resolved)")
        console.print(Syntax(to_yaml(config), "yaml", theme="ansi_dark", background_color="default"))


def run_stage(stage: str, config: Section) -> RunResult:
    """Import stages.<stage> lazily (heavy imports only when needed) and run it."""
    print_config(config)
    module = importlib.import_module(f"stages.{stage}")
    result: RunResult = module.run(config)
    print_summary(stage, result)
    return result


def print_summary(stage: str, result: RunResult) -> None:
    if not is_main_process():
        return
    table = Table(title=f"align {stage}: summary", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.metrics.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    for key, path in result.artifacts.items():
        table.add_row(key, str(path))
    table.add_row("run dir", str(result.run_dir))
    console.print(table)
