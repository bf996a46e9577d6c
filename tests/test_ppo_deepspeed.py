"""2-process CPU DeepSpeed PPO (ZeRO-2 and ZeRO-3): a few steps complete and final/ loads."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import ppo_world
import pytest
import yaml

pytestmark = pytest.mark.heavy


ENV = """
class Counter:
    def reset(self, row):
        self.seen = 0

    def step(self, text):
        self.seen = self.seen or len(text)
        return "Again.", False

    def reward(self):
        return float(self.seen or 1)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(cfg: Path, repo_root: Path, *overrides: str) -> None:
    """`align ppo --config cfg` on 2 CPU processes under the deepspeed launcher; it must succeed."""
    align_bin = str(Path(sys.executable).parent / "align")
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1"}
    port = free_port()
    cmd = [
        "deepspeed",
        "--master_port",
        str(port),
        "--num_gpus",
        "2",
        align_bin,
        "ppo",
        "--config",
        str(cfg),
        *overrides,
    ]
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # DeepSpeed's CPU all-reduce buffers (RAM in /dev/shm) are gone once the ranks exit
    assert not list(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*"))


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_deepspeed_ppo_saves_a_loadable_policy(zero, tmp_path, repo_root):
    assert shutil.which("deepspeed"), "the deepspeed launcher is installed with the package"
    world = ppo_world.build(tmp_path / "world")
    out = tmp_path / "run"
    data = ppo_world.config_dict(world, out, schedule={"steps": 2, "save_steps": 1}, eval={"enabled": False})
    data["deepspeed"] = str(repo_root / "configs" / "deepspeed" / f"{zero}.json")
    if zero == "zero2":  # several reward sources: each rank scores its own samples with each
        data["reward"] = {"sources": [{"model": "reward_model"}, {"rule": "length", "target_words": 4, "weight": 0.5}]}
    else:  # episodes with an environment, its reward beside the reward model's; weights sharded
        (tmp_path / "envs.py").write_text(ENV)
        data["tools"] = {"env": f"{tmp_path / 'envs.py'}:Counter", "max_turns": 2}
        data["reward"] = {"sources": [{"model": "reward_model"}, {"environment": True}]}
    cfg = tmp_path / "ppo.yaml"
    cfg.write_text(yaml.safe_dump(data))
    launch(cfg, repo_root)
    assert (out / "checkpoints" / "step-2" / "COMPLETE.json").is_file()
    from align.config.common import ModelConfig
    from align.models import load_causal_lm
    from align.rundir import read_metrics

    model = load_causal_lm(ModelConfig(name_or_path=str(out)))
    assert model.config.vocab_size == 300
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    if zero == "zero2":
        assert all(0.0 <= r["reward/length"] <= 1.0 and "reward/rm" in r for r in rows)
    else:  # the environment's reward: the number of characters of each episode's first turn
        assert all(1 <= r["tool/turns"] <= 2 and r["reward/env"] > 0 for r in rows)


def test_deepspeed_ppo_resume_reproduces_the_uninterrupted_step(tmp_path, repo_root):
    """ZeRO-2, 2 processes: resuming from step 1's checkpoint gives step 2's figures of the
    straight run, as on one process (each rank's RNG streams are in the checkpoint)."""
    world = ppo_world.build(tmp_path / "world")
    straight = tmp_path / "straight"
    data = ppo_world.config_dict(world, straight, schedule={"steps": 2, "save_steps": 1}, eval={"enabled": False})
    data["deepspeed"] = str(repo_root / "configs" / "deepspeed" / "zero2.json")
    cfg = tmp_path / "ppo.yaml"
    cfg.write_text(yaml.safe_dump(data))
    launch(cfg, repo_root)
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-2")  # as if killed during step 2
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["step-1"]
    launch(cfg, repo_root, f"output.output_dir={resumed}", "output.resume=auto")
    from align.rundir import read_metrics

    def step_two(run: Path) -> dict:
        [row] = [r for r in read_metrics(run / "metrics.jsonl") if r["step"] == 2]
        return {k: v for k, v in row.items() if not k.startswith("time")}

    assert step_two(resumed) == step_two(straight)


def test_the_cpu_allreduce_buffer_is_named_as_deepspeed_names_it():
    """The name DeepSpeed's shm.cpp gives a rank's buffer (uid, address, port, rank), which align
    removes at exit; outside a launch there is none."""
    from align.distributed import cpu_allreduce_buffer

    launch = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29541", "RANK": "1"}
    expected = f"/dev/shm/deepspeed_allreduce_buffer_{os.getuid()}_127.0.0.1_29541_1"
    assert str(cpu_allreduce_buffer(launch)) == expected and cpu_allreduce_buffer({}) is None
