"""bench/gpu_check.py --dry-run: the GPU check's code on CPU with tiny shapes, LoRA and ZeRO-3 PPO paths."""

from __future__ import annotations

import pytest
from bench_run import printed_rows, run_bench


def run_check(repo_root, *args: str) -> list[dict]:
    return printed_rows(run_bench(repo_root, "gpu_check.py", "--dry-run", *args, env={"DS_ACCELERATOR": "cpu"}))


@pytest.mark.heavy
def test_dry_run_measures_every_check(repo_root):
    rows = run_check(repo_root)
    checks = [(r["shape"], r["check"]) for r in rows]
    for shape in ("tiny-qwen2", "tiny-llama"):
        assert [c for s, c in checks if s == shape] == [
            "sft full",
            "sft lora",
            "qlora",
            "reward scoring",
            "ppo step (LoRA)",
        ]
    for row in rows:
        if row["check"].startswith("sft"):
            assert row["tokens_per_s"] > 0 and row["peak_mb"] > 0
        elif row["check"] == "qlora":
            assert row["note"] == "skipped: needs CUDA and bitsandbytes"  # no GPU in CI
        elif row["check"] == "reward scoring":
            assert row["sequences_per_s"] > 0
        else:
            assert row["responses"] == 8 and min(row["generate_s"], row["score_s"], row["train_s"]) > 0


@pytest.mark.heavy
def test_dry_run_zero3_gathers_for_generation(repo_root):
    rows = run_check(repo_root, "--zero3", "--shapes", "tiny-llama")
    ppo = rows[-1]
    assert ppo["check"] == "ppo step (ZeRO-3, full)" and ppo["generate_s"] > 0 and ppo["train_s"] > 0


@pytest.mark.heavy
def test_recipe_dry_run_chains_the_stages_and_measures_each(repo_root, tiny_world):
    """--recipe runs SFT, then reward / GRPO / DPO from that SFT run: a row per stage with its throughput."""
    rows = run_check(repo_root, "--recipe", "configs/tiny")
    assert [r["check"] for r in rows] == ["recipe sft", "recipe reward", "recipe grpo", "recipe dpo"]
    assert rows[0]["tokens_per_s"] > 0 and rows[2]["episodes_per_s"] > 0
    assert rows[1]["pairs_per_s"] > 0 and rows[3]["pairs_per_s"] > 0
    for row in rows:
        assert row["wall_s"] > 0 and row["peak_mb"] > 100 and row["dtype"] == "float32", row  # CPU: no bf16
