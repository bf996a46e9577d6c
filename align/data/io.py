"""Load records (list of dicts) from JSONL/JSON/CSV/Parquet files, folders or a hub dataset.

Every failure is an AlignInputError naming the file (and line, for JSONL) and the fix,
because a bad line found after an hour of tokenizing is the most common waste of a run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from align.errors import AlignInputError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def read_records(
    source: str | Path, split: str = "train", columns: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Records from a file, a folder of files, or a `datasets` hub name; `columns` renames keys."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
        if not files:
            raise AlignInputError(f"{path}: folder holds no {'/'.join(SUFFIXES)} files")
        records = [r for f in files for r in _read_file(f)]
    elif path.is_file():
        records = _read_file(path)
    elif path.suffix.lower() in SUFFIXES or str(source).startswith((".", "/", "~")):
        raise AlignInputError(f"data file not found: {source}")
    else:
        records = _read_hub(str(source), split)
    if columns:
        records = [{columns.get(k, k): v for k, v in r.items()} for r in records]
    if not records:
        raise AlignInputError(f"{source}: no records (the file is empty); add data or point to another file")
    return records


def _read_file(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return list(_read_jsonl(path))
        if suffix == ".json":
            return _read_json(path)
        if suffix == ".csv":
            import pandas as pd

            return pd.read_csv(path, keep_default_na=False).to_dict(orient="records")
        if suffix == ".parquet":
            import pandas as pd

            return pd.read_parquet(path).to_dict(orient="records")
    except AlignInputError:
        raise
    except (OSError, ValueError) as exc:
        raise AlignInputError(f"{path}: cannot read: {exc}") from None
    raise AlignInputError(f"{path}: unsupported file type '{suffix}'; use one of {', '.join(SUFFIXES)}")


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    return (record for _, record in read_jsonl_numbered(path))


def read_jsonl_numbered(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-empty line; a bad line is an error naming file:line."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AlignInputError(
                    f"{path}:{number}: malformed JSON ({exc.msg} at column {exc.colno}); fix or remove that line"
                ) from None
            if not isinstance(record, dict):
                raise AlignInputError(f"{path}:{number}: expected a JSON object per line, got {type(record).__name__}")
            yield number, record


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AlignInputError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
    if isinstance(data, dict):  # {"data": [...]} or {"train": [...]} wrappers
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise AlignInputError(f"{path}: expected a list of objects (or one key holding it)")
        data = lists[0]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise AlignInputError(f"{path}: expected a list of JSON objects")
    return data


def _read_hub(name: str, split: str) -> list[dict[str, Any]]:
    try:
        import datasets

        return list(datasets.load_dataset(name, split=split))
    except Exception as exc:  # hub errors come in many types; all mean "cannot get this dataset"
        raise AlignInputError(
            f"cannot load dataset '{name}' (not a local file, and the hub said: {type(exc).__name__}: {str(exc)[:200]}); "
            "check the path or name"
        ) from None


def require_columns(records: list[dict[str, Any]], required: Iterable[str], source: str) -> None:
    """Fail on the first record missing a required column, naming it and the record number."""
    required = list(required)
    for number, record in enumerate(records, start=1):
        missing = [c for c in required if c not in record]
        if missing:
            raise AlignInputError(
                f"{source}: record {number} has no column {', '.join(repr(m) for m in missing)} "
                f"(it has {', '.join(sorted(record)) or 'none'}); map names with data.columns"
            )


def read_text_lines(path: str | Path) -> list[str]:
    """Non-empty lines of a text file (e.g. the retention set for the forgetting check)."""
    path = Path(path)
    if not path.is_file():
        raise AlignInputError(f"text file not found: {path}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise AlignInputError(f"{path}: empty text file")
    return lines
