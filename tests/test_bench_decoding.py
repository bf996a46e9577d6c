"""bench/decoding.py --dry-run: both decoding paths on the tiny world, sampled and greedy, and the
greedy tokens of align's loop equal to `generate`'s."""

from __future__ import annotations

import re

from bench_run import run_bench


def test_dry_run_times_both_paths_and_greedy_tokens_agree(repo_root, tiny_world):
    done = run_bench(repo_root, "decoding.py", "--dry-run")
    lines = [line for line in done.stdout.splitlines() if line.startswith(("rollout:", "greedy:"))]
    assert [line.split(":")[0] for line in lines] == ["rollout", "greedy"]
    for line in lines:
        rates = re.findall(r"= ([0-9.]+)/s", line)
        assert len(rates) == 2 and all(float(rate) > 0 for rate in rates), line
    assert lines[1].endswith("same greedy tokens: True")
