"""bench/ceiling.py --dry-run: the ceiling bench's code on the tiny world (bare model, align sft,
align generation, the profile), each precision this machine runs natively."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch


def test_dry_run_measures_bare_and_align_in_each_native_precision(repo_root, tiny_world):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(repo_root / "bench" / "ceiling.py"), "--dry-run", "--profile"],
        capture_output=True,
        text=True,
        cwd=repo_root,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    precisions = {r["precision"] for r in rows if r["what"].startswith("bare")}
    assert precisions == ({"fp32", "bf16"} if native_bf16 else {"fp32"})
    align_rows = {r["what"].split()[1]: r for r in rows if r["what"].startswith("align")}
    assert set(align_rows) == {"sft", "generation"}
    assert all(r["value"] > 0 and r["of_bare"] > 0 for r in align_rows.values())
    assert "top operators of one align sft run" in done.stdout and "aten::mm" in done.stdout
