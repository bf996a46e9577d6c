"""Every "run X first" message names the config that writes the missing path."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from align.hints import how_to_make


def run_dirs(value, found):
    if isinstance(value, str) and value.startswith("runs/"):
        found.add(value.split("/final")[0])
    elif isinstance(value, dict):
        for v in value.values():
            run_dirs(v, found)
    elif isinstance(value, list):
        for v in value:
            run_dirs(v, found)
    return found


@pytest.mark.parametrize(
    "folder", ["configs", "configs/tiny", "configs/smollm2", "configs/my_data", "configs/smollm2_real"]
)
def test_each_run_dir_a_config_reads_is_named_with_the_config_that_writes_it(repo_root: Path, folder, monkeypatch):
    monkeypatch.chdir(repo_root)
    checked = 0
    for config_file in sorted((repo_root / folder).glob("*.yaml")):
        data = yaml.safe_load(config_file.read_text())
        own = (data.get("output") or {}).get("output_dir", "") or str(Path(data.get("db", "")).parent)
        for ref in sorted(run_dirs(data, set())):
            if own and (ref + "/").startswith(own.rstrip("/") + "/"):
                continue  # what this config writes itself (e.g. the annotation database)
            hint = how_to_make(ref)
            assert hint, f"{config_file.name}: nothing here writes {ref}"
            stage, writer = re.match(r"run `align (\w+) --config (\S+)` first", hint).groups()
            written = yaml.safe_load((repo_root / writer).read_text())["output"]["output_dir"]
            assert ref == written or (stage == "pipeline" and Path(ref).parent == Path(written)), (ref, hint)
            if stage != "pipeline":
                assert stage in Path(writer).stem or Path(writer).stem.startswith("ppo_"), hint
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ("configs/tiny/ppo.yaml", ["configs/tiny/sft.yaml", "configs/tiny/reward.yaml"]),
        ("configs/reward_demo.yaml", ["configs/sft_demo.yaml"]),
        ("configs/dpo_demo.yaml", ["configs/sft_demo.yaml"]),
    ],
)
def test_a_missing_run_dir_exits_2_naming_the_config_that_writes_it(repo_root: Path, tmp_path, config, names):
    shutil.copytree(repo_root / "configs", tmp_path / "configs")  # a checkout where nothing has run yet
    result = subprocess.run(
        [sys.executable, "-m", "align", config.split("/")[-1].split("_")[0].split(".")[0], "--config", config],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for name in names:
        assert f"--config {name}` first" in result.stderr, result.stderr
