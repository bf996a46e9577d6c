"""Reading records from files or the `datasets` hub, with errors that name file and line."""

from align.data.io import read_jsonl_numbered, read_records, read_text_lines, require_columns

__all__ = ["read_jsonl_numbered", "read_records", "read_text_lines", "require_columns"]
