"""Experiment trackers, offline: TensorBoard, W&B (offline mode), MLflow (local SQLite store) and
Trackio (local store) each get the resolved config, the metrics and the RL samples table of a
real PPO run; a tracker failing mid-run is reported once and the run finishes; one configured but
not installed stops before any work with the extra to install."""

from __future__ import annotations

import importlib.util
import json
import sqlite3

import ppo_world
import pytest
import yaml

import stages.ppo as ppo_stage
from align.config.loader import validate
from align.config.ppo import PPOConfig
from align.rundir import read_metrics
from align.trackers import MlflowTracker, mlflow_store

ALL = ["tensorboard", "wandb", "mlflow", "trackio"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return ppo_world.build(tmp_path_factory.mktemp("tracker_world"))


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """W&B offline, Trackio's store in the test's folder (its module reads TRACKIO_DIR once)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import trackio.sqlite_storage
    import trackio.utils

    store = tmp_path / "trackio"
    for module in (trackio.utils, trackio.sqlite_storage):
        if hasattr(module, "TRACKIO_DIR"):
            monkeypatch.setattr(module, "TRACKIO_DIR", store)
    return store


def run_ppo(world, out, trackers, steps=2):
    config = validate(
        PPOConfig,
        ppo_world.config_dict(
            world,
            out,
            output={"report_to": trackers, "project": "align-test", "group": "team-a"},
            schedule={"steps": steps, "sample_steps": 1, "save_steps": steps},
        ),
    )
    ppo_stage.run(config)
    return config


def test_every_tracker_gets_the_config_the_metrics_and_the_samples_table(world, tmp_path, offline):
    out = tmp_path / "runs" / "ppo-a"
    run_ppo(world, out, ALL)
    logged = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in logged] == [1, 2]

    # TensorBoard: the scalars, and the samples table as text
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb"), size_guidance={"tensors": 0, "scalars": 0}).Reload()
    assert [e.value for e in events.Scalars("rm_score")] == pytest.approx([r["rm_score"] for r in logged])
    assert "samples/text_summary" in events.Tags()["tensors"]

    # W&B offline: one run with the group, the config (run dir included) and the metrics in its
    # .wandb record file; the samples table of each step as JSON
    (run,) = (out / "wandb").glob("offline-run-*")
    record = next(run.glob("run-*.wandb")).read_bytes()
    for text in ("team-a", str(out.resolve()), "rm_score", "policy_lr", "align-test"):
        assert text.encode() in record, text
    tables = sorted((run / "files" / "media" / "table").glob("samples_*.table.json"))
    assert len(tables) == 2
    table = json.loads(tables[0].read_text())
    assert table["columns"][:4] == ["step", "prompt", "response", "rm_score"] and len(table["data"]) == 8

    # MLflow: a run in the SQLite store beside the run dirs, tagged with stage and group
    import mlflow

    uri, _ = mlflow_store(out)
    assert uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    (found,) = client.search_runs([client.get_experiment_by_name("align-test").experiment_id])
    assert found.data.tags["align.stage"] == "ppo" and found.data.tags["align.group"] == "team-a"
    assert found.data.params["optim.policy_lr"] == "0.005" and found.data.params["run_dir"] == str(out.resolve())
    history = client.get_metric_history(found.info.run_id, "rm_score")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx([r["rm_score"] for r in logged])
    artifacts = [a.path for a in client.list_artifacts(found.info.run_id, "samples")]
    assert artifacts == ["samples/step-1.json", "samples/step-2.json"]

    # Trackio: its local store has the run's config and every step's metrics and table
    db = sqlite3.connect(offline / "align-test.db")
    (config,) = db.execute("select config from configs").fetchone()
    config = json.loads(config)
    assert config["output"]["group"] == "team-a" and config["run_dir"] == str(out.resolve())
    rows = [json.loads(m) for (m,) in db.execute("select metrics from metrics order by step, id")]
    assert [r["rm_score"] for r in rows if "rm_score" in r] == pytest.approx([r["rm_score"] for r in logged])
    assert sum("samples" in r for r in rows) == 2


def test_a_tracker_failing_mid_run_is_reported_once_and_the_run_finishes(world, tmp_path, offline, monkeypatch, capsys):
    calls = []

    def flaky(self, step, values):
        calls.append(step)
        if len(calls) >= 2:
            raise ConnectionError("tracking server went away")

    monkeypatch.setattr(MlflowTracker, "log", flaky)
    out = tmp_path / "runs" / "ppo-b"
    run_ppo(world, out, ["mlflow"], steps=3)
    err = capsys.readouterr().err
    assert err.count("mlflow failed (ConnectionError: tracking server went away)") == 1
    assert calls == [1, 2]  # dropped after its failure, not asked again
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    assert (out / "final").is_dir() and (out / "report.md").is_file()


@pytest.mark.parametrize("tracker", ["wandb", "mlflow", "trackio"])
def test_a_tracker_not_installed_is_exit_2_naming_the_extra(world, tmp_path, monkeypatch, capsys, tracker):
    from align.cli import main

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == tracker else real_find_spec(name, *a)
    )
    path = tmp_path / "ppo.yaml"
    data = ppo_world.config_dict(world, tmp_path / "r", output={"report_to": ["tensorboard", tracker]})
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SystemExit) as exit_info:
        main(["ppo", "--config", str(path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "output.report_to" in err and f'pip install "align[{tracker}]"' in err
    assert not (tmp_path / "r").exists()  # stopped with the config, before a run dir was made
