"""bench/benchmark_agreement.py on the tiny world's model and a few hand-written items: align and
lm-evaluation-harness score the same model, items and protocol to the same figures (multiple
choice, partial scoring, GSM8K raw, IFEval through the chat template, bits per byte)."""

from __future__ import annotations

from bench_run import printed_rows, run_bench
from benchmark_rows import benchmark_cache


def test_align_agrees_with_lm_eval(repo_root, tiny_world, tmp_path):
    with benchmark_cache(tmp_path / "cache") as cache:
        done = run_bench(
            repo_root, "benchmark_agreement.py", "--model", str(tiny_world / "model"), "--limit", "4",
            "--benchmarks", "arc_easy,winogrande,gsm8k,ifeval,wikipedia", "--max-new-tokens", "4",
            env={"ALIGN_CACHE": str(cache)},
        )  # fmt: skip
    rows = printed_rows(done)
    compared = {(r["benchmark"], r["metric"]) for r in rows}
    assert {("arc_easy", "acc_norm"), ("winogrande", "acc"), ("gsm8k", "exact_match")} <= compared
    assert {("ifeval", "inst_level_loose"), ("wikipedia", "bits_per_byte")} <= compared
    assert ("winogrande", "acc_norm") not in compared  # not a metric of partial scoring
    for row in rows:
        assert abs(row["diff_points"]) < 1e-3, row
        assert row["n"] == (
            2 if row["benchmark"] in ("ifeval", "wikipedia") else 3 if row["benchmark"] == "gsm8k" else 4
        )
        assert row["align_items_per_s"] > 0 and row["lm_eval_items_per_s"] > 0
