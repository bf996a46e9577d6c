"""bench/sft_strategies.py on the tiny world: one row per mode, with the counts each mode implies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.heavy
def test_table_has_a_row_per_mode(repo_root, tiny_world, tmp_path):
    modes = ["full", "adapter-hybrid", "feature_extraction"]
    done = subprocess.run(
        [
            sys.executable,
            str(repo_root / "bench" / "sft_strategies.py"),
            "--size",
            "tiny",
            "--steps",
            "2",
            "--modes",
            ",".join(modes),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=repo_root,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert [line.split(" | ")[0].strip("| ") for line in table[1:]] == modes
    results = {r["mode"]: r for r in json.loads((tmp_path / "results.json").read_text())}
    count = {m: r["summary"]["trainable_parameters"] for m, r in results.items()}
    assert (
        count["full"]
        == results["full"]["summary"]["total_parameters"]
        > count["feature_extraction"]
        > count["adapter-hybrid"]
        > 0
    )
    assert results["adapter-hybrid"]["saved_mb"] < results["full"]["saved_mb"] / 4  # the adapters alone are saved
    for r in results.values():
        assert r["tuned"]["val_loss"] > 0 and "forgetting_ratio" in r["tuned"]
