"""Data readers: every format reads; every bad file is named with its line."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from align.data import read_records, read_text_lines, require_columns
from align.errors import AlignInputError

ROWS = [{"instruction": "Say hi", "output": "hi"}, {"instruction": "Add 1+1", "output": "2"}]


def test_reads_jsonl_json_csv_parquet_and_folders(tmp_path):
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    (tmp_path / "b.json").write_text(json.dumps({"data": ROWS}))
    pd.DataFrame(ROWS).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame(ROWS).to_parquet(tmp_path / "d.parquet")
    for name in ("a.jsonl", "b.json", "c.csv", "d.parquet"):
        assert read_records(tmp_path / name) == ROWS, name
    assert len(read_records(tmp_path)) == 4 * len(ROWS)


def test_column_mapping(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    assert read_records(tmp_path / "a.jsonl", columns={"question": "instruction", "answer": "output"}) == [
        {"instruction": "q", "output": "a"}
    ]


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(ROWS[1]) + '\n{"instruction": oops}\n')
    with pytest.raises(AlignInputError, match=r"train.jsonl:3: malformed JSON"):
        read_records(path)


def test_non_object_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(AlignInputError, match=r"train.jsonl:1: expected a JSON object"):
        read_records(path)


def test_empty_file_and_missing_file(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(AlignInputError, match="no records"):
        read_records(empty)
    with pytest.raises(AlignInputError, match="data file not found"):
        read_records(tmp_path / "missing.jsonl")


def test_missing_column_names_record_and_fix():
    with pytest.raises(AlignInputError, match=r"data.jsonl: record 2 has no column 'output'.*data.columns"):
        require_columns(
            [{"instruction": "a", "output": "b"}, {"instruction": "c"}], ["instruction", "output"], "data.jsonl"
        )


def test_text_lines(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("one\n\n two \n")
    assert read_text_lines(path) == ["one", "two"]
