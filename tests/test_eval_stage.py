"""`align eval` and `align rag run` end to end on the tiny world (tiny base model, BM25)."""

from __future__ import annotations

import json

import pytest

from align.cli.common import build_config
from align.config.common import ModelConfig
from align.config.rag import GenerationConfig
from align.rag.generate import Generator
from align.rundir import read_metrics


@pytest.fixture(scope="module")
def eval_run(tiny_world, repo_root, tmp_path_factory):
    import stages.eval

    out = tmp_path_factory.mktemp("eval") / "run"
    config = build_config("eval", repo_root / "configs/tiny/eval.yaml", [f"output.output_dir={out}"])
    return stages.eval.run(config)


def test_eval_writes_a_side_by_side_table(eval_run):
    results = json.loads((eval_run.run_dir / "eval.json").read_text())
    assert list(results["parts"]) == ["seen", "heldout"]  # reported separately
    for part in ("seen", "heldout"):
        base, rag = results["parts"][part]["base"], results["parts"][part]["base+rag"]
        assert base["n"] == rag["n"] == 6
        for figures in (base, rag):
            assert all(0.0 <= figures[m] <= 1.0 for m in ("exact_match", "token_f1", "rouge_l", "contains"))
            assert figures["latency_s"] > 0 and figures["mean_answer_words"] >= 0
        assert "recall_at_k" not in base and 0.0 <= rag["mrr"] <= rag["recall_at_k"] <= 1.0
    # each held-out question names its entity, and BM25 finds that entity's document
    assert results["parts"]["heldout"]["base+rag"]["recall_at_k"] == 1.0
    assert results["skipped"] and results["skipped"][0].startswith("sft:")  # optional, not trained here
    assert results["retrieval"]["index"]["action"] == "built"


def test_eval_files(eval_run):
    run = eval_run.run_dir
    report = (run / "report.md").read_text()
    assert "## seen" in report and "## heldout" in report and "eval_summary.png" in report
    for name in ("eval_seen.png", "eval_heldout.png", "eval_summary.png", "config.yaml", "env.json"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "predictions" / "base+rag.heldout.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(1 <= len(r["sources"]) <= 2 for r in rows)  # BM25 leaves out zero-score chunks
    assert all(r["sources"][0]["doc_id"] in r["question"].lower() for r in rows)
    assert not (run / "predictions" / "base.heldout.jsonl").read_text().count('"rank"')  # no retrieval without rag
    assert any("heldout/base+rag/recall_at_k" in r for r in read_metrics(run / "metrics.jsonl"))
    assert eval_run.metrics["heldout/base+rag/recall_at_k"] == 1.0


def test_rag_run_then_reuse_its_index(tiny_world, repo_root, tmp_path):
    import stages.rag

    first = stages.rag.run(
        build_config("rag", repo_root / "configs/tiny/rag.yaml", [f"output.output_dir={tmp_path / 'a'}"])
    )
    answers = [json.loads(line) for line in (first.run_dir / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 8 and all(a["sources"] and "prediction" in a for a in answers)
    assert first.metrics["recall_at_k"] == 1.0
    index_dir = first.run_dir / "index"
    second = stages.rag.run(
        build_config(
            "rag",
            repo_root / "configs/tiny/rag.yaml",
            [f"output.output_dir={tmp_path / 'b'}", f"index_dir={index_dir}", "model=null"],
        )
    )
    results = json.loads((second.run_dir / "eval.json").read_text())
    assert results["retrieval"]["index"]["action"] == "reused"
    assert "contains" not in results["parts"]["questions"]["rag"]  # retrieval only


def test_generator_renders_chat_and_truncates_long_prompts(tiny_world):
    model = ModelConfig(name_or_path=str(tiny_world / "model"))
    generator = Generator(model, GenerationConfig(max_new_tokens=4, batch_size=2))
    rendered = generator.tokenizer.decode(generator.encode("PASSAGES\n\nQUESTION?")[0])
    assert rendered.index("User: PASSAGES") < rendered.index("QUESTION?") < rendered.index("Assistant:")
    long_prompt = "word " * 3000 + "QUESTION?"
    ids, cut = generator.encode(long_prompt)
    assert cut and len(ids) == generator.max_prompt_tokens
    assert generator.tokenizer.decode(ids[-8:]).strip().endswith(
        "Assistant:"
    ) or "QUESTION" in generator.tokenizer.decode(ids[-12:])
    out = generator.generate(["short?", long_prompt])
    assert [g.truncated for g in out] == [False, True]
    raw = Generator(model, GenerationConfig(max_new_tokens=2), chat=False)
    assert raw.tokenizer.decode(raw.encode("plain text")[0], skip_special_tokens=True).strip() == "plain text"
