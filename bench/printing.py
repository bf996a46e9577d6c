"""How a bench prints its rows: a markdown table to read, then the rows as one JSON line (the
last line) for scripts and tests. Imported by the bench scripts (their folder is on sys.path)."""

from __future__ import annotations

import json


def print_rows(rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    print("| " + " | ".join(keys) + " |")
    print("|" + " --- |" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |")
    print(json.dumps(rows))
