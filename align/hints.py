"""Which shipped config writes a missing path, so a "run X first" message names the right one."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

from align.config.stages import STAGE_CONFIGS

STAGES = tuple(name for name in STAGE_CONFIGS if name != "demo")  # `align demo` writes no run dir
ESTIMATOR_FILES = {"grpo": "ppo", "rloo": "ppo"}  # configs/ppo_grpo_demo.yaml runs `align ppo`


def _stage_of(config_file: Path) -> str | None:
    for token in config_file.stem.replace("-", "_").split("_"):
        if token in STAGES:
            return token
        if token in ESTIMATOR_FILES:
            return ESTIMATOR_FILES[token]
    return None


def _config_dirs() -> list[Path]:
    here = Path.cwd() / "configs"
    shipped = Path(__file__).resolve().parents[1] / "configs"
    return [d for d in dict.fromkeys([here, shipped]) if d.is_dir()]


@functools.lru_cache(maxsize=4)
def _writers(dirs: tuple[Path, ...]) -> list[tuple[Path, str, Path]]:
    """(output dir, stage, config file) for every config under `dirs` that names an output dir."""
    found = []
    for folder in dirs:
        for config_file in sorted(folder.rglob("*.yaml")):
            try:
                data = yaml.safe_load(config_file.read_text())
            except (OSError, yaml.YAMLError):
                continue
            output = (data or {}).get("output") if isinstance(data, dict) else None
            stage = _stage_of(config_file)
            if isinstance(output, dict) and output.get("output_dir") and stage:
                shown = config_file.relative_to(folder.parent) if folder.parent == Path.cwd() else config_file
                found.append((Path(output["output_dir"]), stage, shown))
    return found


def _same(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()


def how_to_make(path: str) -> str | None:
    """'run `align sft --config configs/tiny/sft.yaml` first' when a config here writes `path`, else None."""
    wanted = Path(path)
    if wanted.name == "final":
        wanted = wanted.parent
    for output_dir, stage, config_file in _writers(tuple(_config_dirs())):
        if _same(output_dir, wanted):
            return f"run `align {stage} --config {config_file}` first"
        if stage == "pipeline" and _same(output_dir, wanted.parent):
            return f"run `align pipeline --config {config_file}` first (it writes {wanted.name}/ inside {output_dir})"
    return None
