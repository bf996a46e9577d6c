"""bench/rl_throughput.py on the tests' mini PPO world: a row per system with its throughput."""

from __future__ import annotations

import ppo_world
import pytest
import yaml
from bench_run import printed_rows, run_bench


@pytest.mark.heavy
def test_prints_a_row_per_system(repo_root, tmp_path):
    world = ppo_world.build(tmp_path / "world")
    config = ppo_world.config_dict(world, tmp_path / "unused")
    (tmp_path / "ppo.yaml").write_text(yaml.safe_dump(config))
    rows = printed_rows(
        run_bench(repo_root, "rl_throughput.py", "--config", str(tmp_path / "ppo.yaml"), "--steps", "2", "--k", "2")
    )
    assert [r["system"] for r in rows] == [
        "align ppo (critic)",
        "align grpo",
        "align rloo",
        "TRL GRPOTrainer",
        "TRL RLOOTrainer",
    ]
    for row in rows:
        assert row["episodes"] == 2 * 8 and row["episodes_per_s"] > 0, row
        parts = row["generate_%"] + row["score_%"] + row["train_%"]
        assert row["generate_%"] > 0 and row["train_%"] > 0, row  # each phase was timed
        assert parts <= 100.5, row  # the phases split the wall time, nothing counted twice
        if row["system"].startswith("TRL"):  # TRL's training time is the rest of its wall time
            assert parts == pytest.approx(100, abs=0.5), row
        assert row["peak_rss_mib"] > 100, row  # the process holds torch and a model at least


@pytest.mark.heavy
def test_a_rule_reward_goes_to_both_loops_and_held_out_accuracy_is_measured(repo_root, tmp_path):
    """The same rule scores our GRPO and TRL's GRPOTrainer; each ends with its held-out accuracy."""
    world = ppo_world.build(tmp_path / "world")
    config = ppo_world.config_dict(
        world,
        tmp_path / "unused",
        reward={"sources": [{"rule": "length", "target_words": 4}]},
        eval={"max_prompts": 8, "gold": "none"},
        critic={"init": "policy"},
    )
    config["reward_model"] = None
    (tmp_path / "ppo.yaml").write_text(yaml.safe_dump(config))
    done = run_bench(
        repo_root,
        "rl_throughput.py",
        *("--config", str(tmp_path / "ppo.yaml"), "--steps", "2", "--k", "2", "--systems", "grpo", "trl-grpo"),
    )
    rows = printed_rows(done)
    assert [r["system"] for r in rows] == ["before training (the policy as loaded)", "align grpo", "TRL GRPOTrainer"]
    for row in rows:
        assert 0.0 <= row["heldout_length"] <= 1.0, row
    assert "align grpo / TRL GRPOTrainer episodes/s: " in done.stdout
