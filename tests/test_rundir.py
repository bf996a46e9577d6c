"""Run directory contract: config/env files, metrics, atomic checkpoints, no lost runs."""

from __future__ import annotations

import json

import pytest

from align.errors import AlignInputError
from align.rundir import COMPLETE_MARKER, RunDir, default_run_dir, read_metrics, sha256_of


def test_default_name_has_stage_and_timestamp():
    from datetime import datetime

    assert str(default_run_dir("sft", datetime(2026, 1, 2, 3, 4, 5))) == "runs/sft-20260102-030405"


def test_refuses_non_empty_dir_without_resume_or_overwrite(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "final").mkdir()
    (run / "final" / "model.bin").write_text("weights")
    with pytest.raises(AlignInputError, match="already holds a run; pass --resume"):
        RunDir.create(run, "sft")
    assert (run / "final" / "model.bin").read_text() == "weights"


def test_overwrite_moves_old_run_aside_never_deletes(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "eval.json").write_text("{}")
    RunDir.create(run, "sft", overwrite=True)
    assert run.is_dir() and not any(run.iterdir())
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and (aside[0] / "eval.json").read_text() == "{}"


def test_resume_reuses_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    RunDir.create(run, "sft", resume="auto")
    assert (run / "metrics.jsonl").exists()


def test_config_env_and_metrics_files(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"a": 1}\n')
    run = RunDir.create(tmp_path / "run", "sft")
    run.write_config("a: 1\n")
    run.write_env([data])
    logger = run.metrics()
    logger.log(1, {"loss": 2.5})
    logger.log(2, {"loss": 2.0})
    env = json.loads(run.file("env.json").read_text())
    assert env["data_sha256"][str(data)] == sha256_of(data)
    assert env["packages"]["torch"]
    assert env["device"]["kind"] in {"cpu", "cuda", "mps"}
    assert [r["loss"] for r in read_metrics(run.file("metrics.jsonl"))] == [2.5, 2.0]
    assert run.file("config.yaml").read_text() == "a: 1\n"


def test_checkpoint_is_atomic_and_latest_skips_incomplete(tmp_path):
    run = RunDir.create(tmp_path / "run", "ppo")
    run.save_checkpoint(1, lambda d: (d / "state.txt").write_text("one"))
    run.save_checkpoint(2, lambda d: (d / "state.txt").write_text("two"))

    def crash(folder):
        (folder / "state.txt").write_text("half")
        raise RuntimeError("killed mid-save")

    with pytest.raises(RuntimeError):
        run.save_checkpoint(3, crash)
    latest = run.latest_checkpoint()
    assert latest.name == "step-2" and (latest / "state.txt").read_text() == "two"
    assert (latest / COMPLETE_MARKER).is_file()
    assert not (run.checkpoints_dir / "step-3").exists()
    # a half-written folder that somehow got the final name is ignored too (no marker)
    (run.checkpoints_dir / "step-9").mkdir()
    assert run.latest_checkpoint().name == "step-2"


def test_checkpoint_keep_prunes_oldest_complete(tmp_path):
    run = RunDir.create(tmp_path / "run", "sft")
    for step in (10, 20, 30):
        run.save_checkpoint(step, lambda d: (d / "x").write_text("."), keep=2)
    assert [p.name for p in run.complete_checkpoints()] == ["step-20", "step-30"]


def test_resave_same_step_replaces_contents(tmp_path):
    run = RunDir.create(tmp_path / "run", "sft")
    run.save_checkpoint(5, lambda d: (d / "x").write_text("old"))
    run.save_checkpoint(5, lambda d: (d / "x").write_text("new"))
    assert (run.latest_checkpoint() / "x").read_text() == "new"


def test_sha256_of_folder_changes_with_content(tmp_path):
    (tmp_path / "a.txt").write_text("1")
    first = sha256_of(tmp_path)
    (tmp_path / "a.txt").write_text("2")
    assert sha256_of(tmp_path) != first
