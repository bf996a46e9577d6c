"""Training prompts that are not the test: IFEval-style instructions added to tasks (seeded,
never conflicting, readable by the ifeval rule) with every task disjoint from IFEval's prompts
by 8-word sequences; MATH problems without MATH-500's; `align data make` from the shell."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from align.benchmarks.ifeval import check, instruction_ids
from align.data import make

TASKS = [{"instruction": f"Write a short note about topic number {i} for a friend.", "input": ""} for i in range(30)]
TASKS.append({"instruction": "Summarise this text.", "input": "The quick brown fox jumps over the lazy dog today."})
# one task that shares 8 words in a row with a test prompt: never used
LEAKED = "Write a resume for a fresh high school graduate who is seeking their first job."
TEST = [LEAKED + " Make sure to include at least 12 placeholder represented by square brackets."]


def test_rows_are_seeded_compatible_and_readable_by_the_rule():
    rows = make.ifeval_train([*TASKS, {"instruction": LEAKED, "input": ""}], TEST, count=120, seed=3)
    assert rows == make.ifeval_train([*TASKS, {"instruction": LEAKED, "input": ""}], TEST, count=120, seed=3)
    assert rows != make.ifeval_train(TASKS, TEST, count=120, seed=4)
    _, conflicts = make._instructions()
    known = set(instruction_ids())
    for row in rows:
        ids = row["instruction_id_list"]
        assert 1 <= len(ids) <= 3 and set(ids) <= known and len(row["kwargs"]) == len(ids)
        assert all(b not in conflicts[a] and a not in conflicts[b] for i, a in enumerate(ids) for b in ids[i + 1 :]), ids  # fmt: skip
        assert row["prompt"].startswith(row["task"])
        if make.REPEAT in ids:  # last, repeating everything before it
            assert ids[-1] == make.REPEAT
            assert row["prompt"].startswith(row["kwargs"][-1]["prompt_to_repeat"])
        assert set(check(row, "a plain answer")) == {"strict", "loose"}  # the checker reads the row
    assert len({k for row in rows for k in row["instruction_id_list"]}) > 15  # most kinds drawn
    assert all(row["task"] != LEAKED for row in rows)
    assert make.shared_ngrams([row["task"] for row in rows], TEST) == 0


def test_word_ngram_overlap_by_hand():
    assert make.shared_ngrams(["one two three four five six seven eight"], ["x one two three four five six seven eight y"]) == 1  # fmt: skip
    assert make.shared_ngrams(["one two three four five six seven nine"], ["one two three four five six seven eight"]) == 0  # fmt: skip
    assert make.word_ngrams("Too short to have one") == set()


def test_math_rows_leave_math_500_out_and_ask_for_a_boxed_answer():
    problems = [{"id": f"p{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i), "solution": "s"} for i in range(5)]  # fmt: skip
    held_out = [{"question": "What is  3 +\n3?"}]  # the same problem, spaced differently
    rows = make.math_train(problems, held_out)
    assert [r["id"] for r in rows] == ["p0", "p1", "p2", "p4"]
    assert rows[0]["prompt"].endswith(make.MATH_INSTRUCTION) and rows[0]["answer"] == "0"


def test_the_command_writes_rows_and_never_overwrites(tmp_path, monkeypatch):
    from align.data import catalog

    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    tasks = [{"instruction": t["instruction"], "input": t["input"], "output": "o"} for t in TASKS]
    catalog.write_rows(catalog.lookup("alpaca_en"), tasks, [])
    test = [{"id": "1", "prompt": TEST[0], "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}]
    catalog.write_rows(catalog.lookup("ifeval"), test, [])
    out = tmp_path / "train.jsonl"
    env = {"ALIGN_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}

    def align(*args):
        import os

        return subprocess.run(
            [sys.executable, "-m", "align", "data", "make", *args], capture_output=True, text=True,
            env={**os.environ, **env},
        )  # fmt: skip

    done = align("ifeval-train", "--out", str(out), "--count", "40", "--seed", "1")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 40 and "wrote 40 rows" in done.stdout
    again = align("ifeval-train", "--out", str(out))
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows  # untouched
    unknown = align("gsm8k-train", "--out", str(tmp_path / "x.jsonl"))
    assert unknown.returncode == 2 and "ifeval-train, math-train" in unknown.stderr


@pytest.mark.parametrize("count", [1, 5])
def test_small_counts(count):
    assert len(make.ifeval_train(TASKS, TEST, count=count)) == count
