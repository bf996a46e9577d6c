"""`align reward` under a 2-process CPU DeepSpeed ZeRO-2 launch: completes, checkpoints, saves final/."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from align.reward.scorer import RewardScorer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.heavy
@pytest.mark.timeout(900)
def test_two_process_zero2_run_completes(tiny_world, tmp_path, repo_root):
    deepspeed = shutil.which("deepspeed")
    assert deepspeed, "the deepspeed launcher is installed with the package"
    out = tmp_path / "run"
    cfg = {
        "model": {"name_or_path": str(tiny_world / "model")},
        "data": {
            "train": str(tiny_world / "preference" / "train.jsonl"),
            "test": str(tiny_world / "preference" / "test.jsonl"),
            "max_length": 96,
        },
        "simulate": {"annotators": 1, "noise": 0.2},
        "update": {"mode": "full"},
        "training": {"max_steps": 4, "save_steps": 2, "batch_size": 4, "logging_steps": 1, "learning_rate": 1e-3},
        "eval": {"compare_untrained": False},
        "deepspeed": str(repo_root / "configs" / "deepspeed" / "zero2.json"),
        "output": {"output_dir": str(out), "report_to": ["none"]},
    }
    path = tmp_path / "reward.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    cmd = [
        deepspeed,
        "--num_gpus",
        "2",
        "--master_port",
        str(free_port()),
        "--no_local_rank",
        str(Path(sys.executable).parent / "align"),
        "reward",
        "--config",
        str(path),
    ]
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=850, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert (out / "checkpoints" / "step-2" / "COMPLETE.json").is_file()
    assert (out / "checkpoints" / "step-4" / "COMPLETE.json").is_file()
    state = json.loads((out / "checkpoints" / "step-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    summary = json.loads((out / "eval.json").read_text())["summary"]
    assert summary["global_steps"] == 4 and 0.0 <= summary["test_trained_accuracy"] <= 1.0
    assert RewardScorer(out).score(["q"], ["a"]).shape == (1,)
