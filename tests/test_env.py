"""`align env`: what a bug report needs, including whether the annotation database answers."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

from align.environment import as_text, database_report, environment_report
from annotation_ui.store import NewItem, Store


def test_report_has_versions_torch_build_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "worlds").mkdir(parents=True)
    (tmp_path / "cache" / "worlds" / "w.bin").write_bytes(b"x" * 3 * 2**20)
    report = environment_report()
    assert report["packages"]["torch"] == metadata.version("torch")
    assert report["packages"]["trl"] == metadata.version("trl")
    import torch

    assert report["torch"]["CUDA available"] == str(torch.cuda.is_available())
    assert report["torch"]["build"].startswith(torch.__version__)
    from align.device import cpu_has_native_bf16

    native = report["torch"]["CPU native bf16"]
    assert native.startswith("none") != cpu_has_native_bf16()  # lists the flags precision auto reads
    assert "worlds 3 MiB" in report["cache"]["cache"]
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")  # what a user set is what the report says
    assert environment_report()["deepspeed"]["accelerator"] == "cpu"
    text = as_text(report)
    assert text.startswith("system:\n- python: ") and f"- transformers: {metadata.version('transformers')}" in text


def test_database_reachable_with_tables_missing_or_unreachable_and_no_password_shown(tmp_path):
    db = tmp_path / "a.db"
    store = Store(str(db))
    store.add_items([NewItem("p", ["a", "b"], "i1")])
    store.close()
    assert database_report(str(db))["annotation database"].endswith(": reachable, annotation tables present")
    empty = tmp_path / "empty.db"
    Store(str(empty)).close()  # a store makes its tables; drop them: a database without align's tables
    import sqlite3

    with sqlite3.connect(empty) as connection:
        for (table,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            connection.execute(f'DROP TABLE "{table}"')
    assert database_report(str(empty))["annotation database"].endswith(": reachable, no annotation tables yet")
    named = tmp_path / "postgresql-copy.db"  # a SQLite file whose name says postgresql: still SQLite
    named.write_bytes(db.read_bytes())
    assert database_report(str(named))["annotation database"].endswith(": reachable, annotation tables present")
    assert "no such file" in database_report(str(tmp_path / "none.db"))["annotation database"]
    down = database_report("postgresql://ann:s3cret-pw@127.0.0.1:1/nothing")["annotation database"]
    assert "NOT reachable" in down and "s3cret-pw" not in down and "***" in down


def test_align_env_from_the_shell_with_a_config(repo_root, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "align", "env", "--db", str(tmp_path / "none.db")],
        cwd=repo_root,
        env={**os.environ, "ALIGN_CACHE": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "annotation database: sqlite:///" in result.stdout
        and "Setting accelerator" not in result.stdout + result.stderr
    )
    bad = subprocess.run(
        [sys.executable, "-m", "align", "env", "--config", "configs/sft_demo.yaml"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "names no annotation database" in bad.stderr and "Traceback" not in bad.stderr
