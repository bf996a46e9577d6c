"""Run a bench/ script as a user would (its own process, offline) and read the rows it prints last."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_bench(
    repo_root: Path, script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """bench/<script> with `args`; fails the test with its stderr's tail unless it exits 0."""
    done = subprocess.run(
        [sys.executable, str(repo_root / "bench" / script), *args],
        capture_output=True,
        text=True,
        cwd=repo_root,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def printed_rows(done: subprocess.CompletedProcess) -> list[dict]:
    """The JSON list a bench prints as its last line."""
    return json.loads(done.stdout.strip().splitlines()[-1])
