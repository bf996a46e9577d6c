"""`align rag` / `align eval` from the shell: exit codes and messages for bad input, index + answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ALIGN = [sys.executable, "-m", "align"]


def align(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([*ALIGN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def assert_input_error(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def test_empty_corpus_and_unreadable_file_exit_2(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    assert_input_error(
        align("rag", "index", "--corpus", "empty.jsonl", "--out", "idx", cwd=tmp_path), "empty.jsonl", "empty"
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "fine.md").write_text("Readable text.")
    (docs / "broken.txt").write_bytes(b"\xff\xfe\xfa not utf-8")
    assert_input_error(
        align("rag", "index", "--corpus", "docs", "--out", "idx", cwd=tmp_path), "broken.txt", "cannot read"
    )
    assert not (tmp_path / "idx").exists()


def test_index_then_answer_with_sources(tmp_path):
    docs = tmp_path / "docs.jsonl"
    rows = [{"id": f"d{i}", "text": f"Town {i} is known for its market and its river number {i}."} for i in range(20)]
    rows.append({"id": "vault", "text": "The vault code of Quimbledor is 7431."})
    docs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    built = align(
        "rag",
        "index",
        "--corpus",
        "docs.jsonl",
        "--out",
        "idx",
        "--chunk-size",
        "32",
        "--chunk-overlap",
        "4",
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["n_docs"] == 21
    # a second corpus is added to the same index without a rebuild
    (tmp_path / "more.jsonl").write_text(json.dumps({"id": "new", "text": "Zebras of Quorl dance at midnight."}) + "\n")
    added = align(
        "rag",
        "index",
        "--corpus",
        "more.jsonl",
        "--out",
        "idx",
        "--chunk-size",
        "32",
        "--chunk-overlap",
        "4",
        cwd=tmp_path,
    )
    assert added.returncode == 0 and "extended" in added.stdout, added.stdout + added.stderr
    answered = align(
        "rag",
        "answer",
        "--index",
        "idx",
        "-q",
        "vault code of Quimbledor?",
        "-q",
        "where do zebras dance",
        "--json",
        cwd=tmp_path,
    )
    assert answered.returncode == 0, answered.stderr
    lines = [json.loads(line) for line in answered.stdout.splitlines() if line.startswith("{")]
    assert [row["sources"][0]["doc_id"] for row in lines] == ["vault", "new"]


def test_eval_rejects_missing_answers_and_missing_models(tmp_path):
    (tmp_path / "qa.jsonl").write_text('{"question": "Q1?", "answers": ["a"]}\n{"question": "Q2?"}\n')
    config = tmp_path / "eval.yaml"
    config.write_text("qa: [qa.jsonl]\nsystems: {sft: runs/sft-demo}\n")
    assert_input_error(
        align("eval", "--config", "eval.yaml", "output.output_dir=out", cwd=tmp_path),
        "qa.jsonl: record 2 has no answer",
    )
    (tmp_path / "qa.jsonl").write_text('{"question": "Q1?", "answers": ["a"]}\n')
    result = align("eval", "--config", "eval.yaml", "output.output_dir=out", cwd=tmp_path)
    assert_input_error(result, "eval system 'sft'", "run `align sft --config ", "configs/sft_demo.yaml` first")
    assert not (tmp_path / "out").exists()  # nothing written for bad input


def test_sentence_index_from_the_shell_and_a_bad_unit(tmp_path):
    (tmp_path / "docs.jsonl").write_text(
        json.dumps({"id": "z", "text": "Zorbin is a city. Its color is teal! Why? Salt."}) + "\n"
    )
    bad = align("rag", "index", "--corpus", "docs.jsonl", "--out", "idx", "--chunk-unit", "paragraphs", cwd=tmp_path)
    assert_input_error(bad, "chunk_unit")
    assert not (tmp_path / "idx").exists()
    built = align(
        "rag",
        "index",
        "--corpus",
        "docs.jsonl",
        "--out",
        "idx",
        "--chunk-unit",
        "sentences",
        "--chunk-size",
        "2",
        "--chunk-overlap",
        "0",
        "--retriever",
        "bm25",
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    chunks = [json.loads(line)["text"] for line in (tmp_path / "idx" / "chunks.jsonl").read_text().splitlines()]
    assert chunks == ["Zorbin is a city. Its color is teal!", "Why? Salt."]
