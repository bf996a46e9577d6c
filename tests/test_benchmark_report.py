"""The benchmark figures for people: the systems x benchmarks table, the per-method sentences of
the alignment tax (signs, points, two-standard-error calls worked out by hand), and the pipeline's
`benchmarks: quick | full | none` reaching the eval step."""

from __future__ import annotations

from align.benchmarks.report import benchmark_sentences, change_sentence, systems_table, tax_section
from align.benchmarks.tasks import QUICK_SUITE, suite
from align.config.pipeline import PipelineConfig


def result(value: float, stderr: float, headline: str = "acc_norm", refused: str | None = None) -> dict:
    protocol = {"kind": "choice", "n": 100, "of": 200, "shots": 0, "chat": False, "max_new_tokens": None,
                "stop": [], "normalisation": "", "sample_seed": 0, "checker": ""}  # fmt: skip
    metrics = {} if refused else {headline: {"value": value, "stderr": stderr, "n": 100}}
    return {"metrics": metrics, "headline": headline, "protocol": protocol, "refused": refused}


BENCHMARKS = {
    "arc_easy": {"base": result(0.50, 0.05), "sft": result(0.46, 0.05), "grpo": result(0.60, 0.02)},
    "ifeval": {"base": result(0.30, 0.01, "score"), "sft": result(0.35, 0.01, "score"), "grpo": result(0.34, 0.01, "score")},
    "wikipedia": {"base": result(1.10, 0.01, "bits_per_byte"), "sft": result(1.20, 0.01, "bits_per_byte"),
                  "grpo": result(1.21, 0.01, "bits_per_byte")},
    "gsm8k": {"base": result(0, 0, "exact_match", refused="too long"), "sft": result(0.02, 0.01, "exact_match")},
}  # fmt: skip


def test_change_sentences_by_hand():
    # sft vs base: arc -4.0 (± sqrt(5^2+5^2) = 7.1), ifeval +5.0 (± 1.4: beyond 2 se), wikipedia +0.100 bits (worse,
    # ± 0.014: beyond); gsm8k is refused for base, so it is not compared
    assert change_sentence(BENCHMARKS, "sft", "base") == (
        "sft vs base: better on ifeval +5.0 (± 1.4); worse on arc_easy -4.0 (± 7.1), wikipedia +0.100 (± 0.014); "
        "beyond two standard errors: ifeval (better), wikipedia (worse)."
    )
    # grpo vs sft: arc +14.0 (± 5.4, beyond), ifeval -1.0 (± 1.4), wikipedia +0.010 (± 0.014); no gsm8k for grpo
    assert change_sentence(BENCHMARKS, "grpo", "sft") == (
        "grpo vs sft: better on arc_easy +14.0 (± 5.4); worse on ifeval -1.0 (± 1.4), wikipedia +0.010 (± 0.014); "
        "beyond two standard errors: arc_easy (better)."
    )
    assert change_sentence(BENCHMARKS, "dpo", "sft") is None


def test_tables_and_terminal_sentences():
    assert systems_table(BENCHMARKS)["base"] == {"arc_easy": 0.5, "ifeval": 0.3, "wikipedia": 1.1, "gsm8k": None}
    section = "\n".join(tax_section(BENCHMARKS, ["grpo"]))
    assert "| arc_easy (acc_norm) | 50.0 ± 5.0 | 46.0 ± 5.0 | 60.0 ± 2.0 |" in section
    assert "| wikipedia (bits_per_byte) | 1.100 ± 0.010 | 1.200 ± 0.010 | 1.210 ± 0.010 |" in section
    assert "| gsm8k (exact_match) | refused | 2.0 ± 1.0 |  |" in section
    assert "- grpo vs sft: better on arc_easy" in section
    sentences = benchmark_sentences(BENCHMARKS)
    assert sentences[0] == "arc_easy (acc_norm, 100 items): grpo 60.0%, base 50.0%, sft 46.0%."
    assert sentences[2] == "wikipedia (bits_per_byte, 100 items): base 1.100, sft 1.200, grpo 1.210."  # lower first


def test_pipeline_benchmarks_switch_reaches_the_eval_step(tmp_path):
    from align.config import load_config
    from align.pipeline.steps import Context, steps_for

    def eval_benchmarks(overrides: list[str]) -> list[tuple]:
        config = load_config(PipelineConfig, "configs/tiny/pipeline.yaml", overrides)
        step = next(s for s in steps_for(config) if s.name == "eval")
        eval_config = step.config(Context(config, tmp_path), check_paths=False)
        return [(b.name, b.limit, b.max_new_tokens) for b in eval_config.benchmarks]

    assert eval_benchmarks([]) == []
    quick = eval_benchmarks(["benchmarks=quick"])
    assert [name for name, _, _ in quick] == list(QUICK_SUITE) and ("ifeval", 100, 512) in quick
    assert all(limit is None for _, limit, _ in eval_benchmarks(["benchmarks=full"]))
    assert suite("none") == []


def test_the_sample_answers_read_the_qa_sets_not_the_benchmark_files(tmp_path):
    """predictions/ holds every benchmark's answers beside the QA sets' (other row shapes): the
    report's same-questions table reads only the QA sets eval.json names."""
    import json

    from align.pipeline.report import _samples

    folder = tmp_path / "eval" / "predictions"
    folder.mkdir(parents=True)
    (tmp_path / "eval" / "eval.json").write_text(json.dumps({"parts": {"heldout": {}}, "benchmarks": {}}))
    for system in ("base", "sft"):
        qa = {"question": "Where is Sunmere?", "answers": ["north"], "prediction": f"{system} says north"}
        (folder / f"{system}.heldout.jsonl").write_text(json.dumps(qa) + "\n")
        (folder / f"{system}.ifeval.jsonl").write_text(
            json.dumps({"id": "1", "response": "x", "strict": [True]}) + "\n"
        )
    lines = _samples(tmp_path, 3, best=None)
    assert "### heldout" in lines and "### ifeval" not in lines
    table = "\n".join(lines)
    assert "Where is Sunmere?" in table and "sft says north" in table
