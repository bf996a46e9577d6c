"""`align sft` under the deepspeed launcher on CPU (2 processes, gloo): ZeRO-2 and ZeRO-3 train and save a
loadable model; plus the unit checks behind the CPU/gloo gather fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from align.config.sft import SFTConfig
from align.trainer_builders import training_arguments_kwargs

REPO = Path(__file__).resolve().parents[1]


def test_cpu_runs_tell_accelerate_they_are_on_cpu(tmp_path):
    """Without use_cpu, accelerate on a GPU-less machine under a DeepSpeed launch records one process per rank
    and every metric gather fails ("invalid output tensor list"); the builder must always set it."""
    config = SFTConfig.model_validate({"model": {"name_or_path": "m"}, "data": {"train": "t.jsonl"}})
    kwargs = training_arguments_kwargs(config.training, tmp_path, torch.float32)
    assert kwargs["use_cpu"] is (not torch.cuda.is_available())
    assert kwargs["bf16"] is False and kwargs["fp16"] is False and kwargs["report_to"] == "none"


def test_check_world_catches_a_mismatched_trainer(monkeypatch):
    import torch.distributed as dist

    from align.distributed import check_world

    check_world(1, 0)  # no process group: nothing to compare
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29533")
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        check_world(1, 0)
        with pytest.raises(RuntimeError, match="sees 2 process"):
            check_world(2, 0)
    finally:
        dist.destroy_process_group()


@pytest.mark.heavy
@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_two_process_cpu_deepspeed_trains_and_saves_loadable_model(tiny_world, tmp_path, zero):
    from align.config.common import ModelConfig
    from align.models import load_causal_lm

    launcher = shutil.which("deepspeed")
    assert launcher, "the deepspeed launcher is installed with the package"
    out = tmp_path / "run"
    config = {
        "model": {"name_or_path": str(tiny_world / "model")},
        "data": {"train": str(tiny_world / "sft" / "train.jsonl"), "max_samples": 16, "max_length": 96},
        "update": {"mode": "full"},
        "training": {"max_steps": 3, "batch_size": 2, "logging_steps": 1, "save_steps": 3, "learning_rate": 1e-3},
        "eval": {"enabled": False},
        "deepspeed": str(REPO / "configs" / "deepspeed" / f"{zero}.json"),
        "output": {"output_dir": str(out), "report_to": ["none"]},
    }
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    align_script = shutil.which("align") or str(Path(sys.executable).with_name("align"))
    cmd = [
        launcher,
        "--num_gpus",
        "2",
        "--master_port",
        "29541" if zero == "zero2" else "29542",
        align_script,
        "sft",
        "--config",
        str(path),
    ]
    proc = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "loss" in r] == [1, 2, 3]  # rank 0 alone logged, once per step
    assert (out / "checkpoints" / "step-3" / "COMPLETE.json").is_file()
    model = load_causal_lm(ModelConfig(name_or_path=str(out)))
    base = load_causal_lm(ModelConfig(name_or_path=str(tiny_world / "model")))
    ids = torch.arange(3, 20).unsqueeze(0)
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, base(ids).logits)  # trained weights were gathered and saved
