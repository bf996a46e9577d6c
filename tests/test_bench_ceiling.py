"""bench/ceiling.py --dry-run: the ceiling bench's code on the tiny world (bare model, align sft,
align generation on the model and on a LoRA policy, a GRPO run, the profile), each precision
this machine runs natively."""

from __future__ import annotations

from bench_run import printed_rows, run_bench

from align.device import detect_device


def test_dry_run_measures_bare_and_align_in_each_native_precision(repo_root, tiny_world):
    done = run_bench(repo_root, "ceiling.py", "--dry-run", "--profile")
    rows = printed_rows(done)
    expected = {"fp32", "bf16"} if detect_device().bf16 else {"fp32"}
    assert {r["precision"] for r in rows if r["what"].startswith("bare")} == expected
    align_rows = [r for r in rows if "stage" in r]
    stages = ("sft", "generation", "generation_lora", "grpo_rollout", "grpo_update")
    assert {(r["stage"], r["precision"]) for r in align_rows} == {(s, p) for s in stages for p in expected}
    assert all(r["value"] > 0 for r in align_rows)
    assert all(r["of_bare"] > 0 for r in align_rows if r["stage"] != "grpo_update")
    assert "top operators of one align sft run" in done.stdout and "aten::mm" in done.stdout
