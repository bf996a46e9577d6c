"""What every stage command does before it runs: load + validate the config (running it is
align.runner). Kept apart from the typer wiring so stage commands stay one-liners."""

from __future__ import annotations

from pathlib import Path

from align.config import STAGE_CONFIGS, check_input_paths, load_config, resolve_demo_refs
from align.config.common import Section
from align.runner import console

__all__ = ["build_config", "console"]


def build_config(
    stage: str, config_path: Path | None, overrides: list[str], resume: bool = False, overwrite: bool = False
) -> Section:
    """Config file + overrides (+ --resume/--overwrite flags) -> validated config with demo refs resolved."""
    extra = list(overrides)
    if resume:
        extra.append("output.resume=auto")
    if overwrite:
        extra.append("output.overwrite=true")
    config = load_config(STAGE_CONFIGS[stage], config_path, extra)
    check_input_paths(config, str(config_path or "command line"), run_dirs=True)
    return resolve_demo_refs(config)
