"""`align eval` with public benchmarks on the tiny world's model: every kind of benchmark runs,
figures agree with the per-item predictions they came from, a benchmark the model's context
cannot hold is refused with its reason while the others run, the same seeded sample serves every
system, and bad input (an unknown name, a damaged cache) is one clear error. The data sets are
written into a temporary cache by hand, in align's row shapes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
from benchmark_rows import ARC_ROWS, WIKI_ROWS, benchmark_cache

from align.config.rag import EvalConfig
from align.data import catalog


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory):
    with benchmark_cache(tmp_path_factory.mktemp("align-cache")) as cache:
        yield cache


@pytest.fixture(scope="module")
def bench_run(bench_cache, tiny_world, tmp_path_factory):
    import stages.eval

    model = str(tiny_world / "model")
    config = EvalConfig(
        systems={"base": model, "again": {"model": model, "chat": False}},
        benchmarks=[
            {"name": "arc_easy", "limit": 4},
            {"name": "arc_challenge", "shots": 5},
            {"name": "gsm8k", "shots": 2, "max_new_tokens": 4},
            {"name": "ifeval", "max_new_tokens": 4},
            {"name": "math500", "shots": 1, "max_new_tokens": 4},
            "wikipedia",
        ],
        seed=3,
        output={"output_dir": str(tmp_path_factory.mktemp("bench") / "run")},
    )
    return stages.eval.run(config)


def predictions(run, system, bench):
    path = run.run_dir / "predictions" / f"{system}.{bench}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_multiple_choice_figures_come_from_the_items(bench_run):
    results = json.loads((bench_run.run_dir / "eval.json").read_text())
    arc = results["benchmarks"]["arc_easy"]["base"]
    rows = predictions(bench_run, "base", "arc_easy")
    assert arc["protocol"]["n"] == len(rows) == 4 and arc["protocol"]["of"] == 5 and arc["protocol"]["sample_seed"] == 3
    acc = sum(r["pick"] == r["gold"] for r in rows) / 4
    assert arc["metrics"]["acc"]["value"] == pytest.approx(acc)
    assert arc["metrics"]["acc"]["stderr"] == pytest.approx(math.sqrt(acc * (1 - acc) * 4 / 3 / 4), abs=1e-6)
    for r in rows:  # acc_norm divides by the continuation's characters: the long choice is favoured less
        lengths = [len(c) - 1 for c in ARC_ROWS[0]["continuations"]]  # the space before a choice does not count
        normalised = [lp / n for lp, n in zip(r["logprobs"], lengths)]
        assert r["pick_norm"] == max(range(3), key=normalised.__getitem__)
    assert [r["id"] for r in predictions(bench_run, "again", "arc_easy")] == [r["id"] for r in rows]  # same sample


def test_a_benchmark_too_long_for_the_model_is_refused_and_the_rest_run(bench_run):
    results = json.loads((bench_run.run_dir / "eval.json").read_text())
    refused = results["benchmarks"]["arc_challenge"]["base"]
    assert "the model's context is 512" in refused["refused"] and refused["metrics"] == {}
    assert results["benchmark_table"]["base"]["arc_challenge"] is None
    assert results["benchmark_table"]["base"]["arc_easy"] is not None
    assert "refused" in (bench_run.run_dir / "report.md").read_text()


def test_generative_benchmarks_and_their_protocols(bench_run):
    results = json.loads((bench_run.run_dir / "eval.json").read_text())
    gsm = results["benchmarks"]["gsm8k"]
    assert gsm["base"]["protocol"]["chat"] is True and gsm["base"]["protocol"]["shots"] == 2
    assert gsm["again"]["protocol"]["chat"] is False  # the system's chat: false reaches the benchmark
    assert gsm["again"]["protocol"]["stop"] == ["Question:", "\n\n"]
    rows = predictions(bench_run, "base", "gsm8k")
    assert gsm["base"]["metrics"]["exact_match"]["value"] == pytest.approx(sum(r["exact_match"] for r in rows) / 3)
    math = results["benchmarks"]["math500"]["base"]
    assert math["protocol"]["shots"] == 1 and math["metrics"]["accuracy"]["n"] == 2
    rows = predictions(bench_run, "base", "math500")
    assert math["metrics"]["accuracy"]["value"] == pytest.approx(sum(r["accuracy"] for r in rows) / 2)
    ifeval = results["benchmarks"]["ifeval"]["base"]
    assert ifeval["protocol"]["checker"].startswith("lm-eval 0.4.13 IFEval checker")
    figures = ifeval["metrics"]
    assert figures["score"]["value"] == pytest.approx(
        (figures["prompt_level_strict"]["value"] + figures["inst_level_strict"]["value"]) / 2
    )
    assert figures["score"]["stderr"] == pytest.approx(
        (figures["prompt_level_strict"]["stderr"] + figures["inst_level_strict"]["stderr"]) / 2, abs=1e-6
    )


def test_bits_per_byte_by_hand_from_the_items(bench_run):
    results = json.loads((bench_run.run_dir / "eval.json").read_text())
    rows = predictions(bench_run, "base", "wikipedia")
    bits = sum(r["nll"] for r in rows) / math.log(2)
    assert sum(r["bytes"] for r in rows) == sum(len(r["text"].encode()) for r in WIKI_ROWS)
    wiki = results["benchmarks"]["wikipedia"]["base"]["metrics"]
    assert wiki["bits_per_byte"]["value"] == pytest.approx(bits / sum(r["bytes"] for r in rows), rel=1e-3)
    assert bench_run.metrics["wikipedia/base/bits_per_byte"] == wiki["bits_per_byte"]["value"]
    report = (bench_run.run_dir / "report.md").read_text()
    assert "## Public benchmarks" in report and "eval_benchmarks.png" in report and "Protocols:" in report


def cli(args, env):
    return subprocess.run([sys.executable, "-m", "align", *args], capture_output=True, text=True, env=env, timeout=300)


def test_bad_benchmark_input_exits_2(bench_cache, tiny_world, tmp_path):
    env = {**os.environ, "ALIGN_CACHE": str(bench_cache)}
    config = tmp_path / "eval.yaml"
    config.write_text(f"systems: {{base: {tiny_world / 'model'}}}\noutput: {{output_dir: {tmp_path / 'run'}}}\n")
    base = ["eval", "--config", str(config)]
    out = cli([*base, "benchmarks=[gsm9k]"], env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "unknown benchmark 'gsm9k'" in out.stderr and "hellaswag" in out.stderr
    out = cli([*base, "benchmarks=[{name: arc_easy, shots: 3}]"], env)
    assert out.returncode == 2 and "shots must be 0 or 5" in out.stderr
    rows = catalog.rows_path(catalog.lookup("wikipedia"))
    original = rows.read_text()
    try:
        rows.write_text(original.replace("cat", "bat"))
        out = cli([*base, "benchmarks=[wikipedia]"], env)
        assert (
            out.returncode == 2
            and "checksum mismatch" in out.stderr
            and "align data pull wikipedia --force" in out.stderr
        )
    finally:
        rows.write_text(original)
    assert not (tmp_path / "run" / "eval.json").exists()
