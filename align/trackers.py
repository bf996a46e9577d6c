"""Experiment trackers: TensorBoard, Weights & Biases, MLflow and Trackio behind one small interface.

metrics.jsonl stays the record of a run (the reports read it); a tracker is a copy for the
dashboards people already use. So a tracker may fail without the run failing: the first error
is printed once, naming the tracker, and that tracker is dropped for the rest of the run.

Each works without a network: W&B in offline mode unless an API key is set (`wandb sync` later),
MLflow in a local SQLite store beside the run dirs unless MLFLOW_TRACKING_URI says otherwise,
Trackio in its local store (TRACKIO_DIR, default ~/.cache/huggingface/trackio).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from align.distributed import say

MODULES = {
    "tensorboard": ("tensorboard",),
    "wandb": ("wandb",),
    "mlflow": ("mlflow", "alembic"),
    "trackio": ("trackio",),
}
"""The modules each tracker imports; MLflow's local SQLite store needs alembic beside it."""


def missing_tracker_packages(names: Sequence[str]) -> list[str]:
    """The configured trackers whose packages are not installed (checked with the config, before
    any model loads). TensorBoard is the default and quietly skipped when absent."""
    return [
        name
        for name in names
        if name in MODULES and name != "tensorboard" and any(importlib.util.find_spec(m) is None for m in MODULES[name])
    ]


def scalar_values(values: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics record (dashboards plot numbers; lists and strings stay in metrics.jsonl)."""
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class Tracker:
    """One tracker run for one stage run. Subclasses open it in __init__."""

    name = ""

    def log(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def log_table(self, name: str, step: int, rows: Sequence[dict[str, Any]]) -> None:
        """A table of sample completions (RL): one row per response."""

    def finish(self) -> None:
        pass


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def __init__(self, run_dir: Path, **_):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tb"))

    def log(self, step, values):
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def log_table(self, name, step, rows):
        self.writer.add_text(name, markdown_rows(rows), step)

    def finish(self):
        self.writer.close()


def has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    with contextlib.suppress(Exception):
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    return False


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, run_dir: Path, stage: str, project: str, group: str | None, config: dict):
        import wandb

        mode = os.environ.get("WANDB_MODE") or ("online" if has_wandb_key() else "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        self.wandb = wandb
        self.run = wandb.init(
            project=project,
            name=f"{stage}:{run_dir.name}",
            group=group,
            job_type=stage,
            dir=str(run_dir),
            config=config,
            mode=mode,
            reinit="finish_previous",
        )
        if mode == "offline":
            say(f"wandb: offline run in {run_dir / 'wandb'} (upload it later with `wandb sync {run_dir / 'wandb'}`)")

    def log(self, step, values):
        self.run.log(values, step=step)

    def log_table(self, name, step, rows):
        columns, data = table_cells(rows)
        self.run.log({name: self.wandb.Table(columns=columns, data=data)}, step=step)

    def finish(self):
        self.run.finish()


def mlflow_store(run_dir: Path) -> tuple[str, str]:
    """(tracking URI, artifact root): MLFLOW_TRACKING_URI when set, else a SQLite store shared
    by the runs next to this one (a pipeline's stages land in one store)."""
    root = run_dir.resolve().parent / "mlflow"
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"
    return uri, (root / "artifacts").as_uri()


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, run_dir: Path, stage: str, project: str, group: str | None, config: dict):
        import mlflow

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
        logging.getLogger("alembic").setLevel(logging.WARNING)
        uri, artifacts = mlflow_store(run_dir)
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name(project)
        experiment_id = (
            experiment.experiment_id if experiment else client.create_experiment(project, artifact_location=artifacts)
        )
        tags = {"align.stage": stage, "align.run_dir": str(run_dir.resolve())}
        if group:
            tags["align.group"] = group
        self.run = mlflow.start_run(experiment_id=experiment_id, run_name=f"{stage}:{run_dir.name}", tags=tags)
        mlflow.log_params(flat_params(config))
        say(f"mlflow: run {self.run.info.run_id} in {uri} (see it with `mlflow ui --backend-store-uri {uri}`)")

    def log(self, step, values):
        self.mlflow.log_metrics({metric_key(k): v for k, v in values.items()}, step=step)

    def log_table(self, name, step, rows):
        columns, data = table_cells(rows)
        self.mlflow.log_table(dict(zip(columns, map(list, zip(*data)))), artifact_file=f"{name}/step-{step}.json")

    def finish(self):
        self.mlflow.end_run()


class TrackioTracker(Tracker):
    name = "trackio"

    def __init__(self, run_dir: Path, stage: str, project: str, group: str | None, config: dict):
        with contextlib.redirect_stdout(io.StringIO()):  # its banner: our own line below says where
            import trackio

            self.trackio = trackio
            trackio.init(
                project=project,
                name=f"{stage}:{run_dir.name}",
                group=group,
                config=config,
                embed=False,
                auto_log_cpu=False,
                auto_log_gpu=False,
            )
        from trackio.utils import TRACKIO_DIR

        say(f"trackio: project {project} in {TRACKIO_DIR} (see it with `trackio show --project {project}`)")

    def log(self, step, values):
        self.trackio.log(values, step=step)

    def log_table(self, name, step, rows):
        columns, data = table_cells(rows)
        self.trackio.log({name: self.trackio.Table(columns=columns, data=data)}, step=step)

    def finish(self):
        with contextlib.redirect_stdout(io.StringIO()):
            self.trackio.finish()


OPENERS = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker, "mlflow": MlflowTracker, "trackio": TrackioTracker}


def metric_key(key: str) -> str:
    """MLflow accepts letters, digits and _ - . / and space in metric names."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def flat_params(config: dict, prefix: str = "") -> dict[str, str]:
    """The resolved config as MLflow parameters (dotted keys, values as text, 6,000 characters at most)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_params(value, f"{name}."))
        else:
            flat[metric_key(name)] = str(value)[:6000]
    return flat


def table_cells(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """(columns, one list of cells per row): the columns of the first row, in its order."""
    columns = list(rows[0])
    return columns, [[row.get(column) for column in columns] for row in rows]


def markdown_rows(rows: Sequence[dict[str, Any]]) -> str:
    columns, data = table_cells(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for cells in data:
        lines.append(
            "| " + " | ".join(str("" if c is None else c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
        )
    return "\n".join(lines)


class TrackerSet:
    """The trackers of one stage run. Every call goes to each tracker; one that raises is
    reported once and dropped, so a dashboard's outage never stops training."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers

    @classmethod
    def open(
        cls, names: Sequence[str], run_dir: Path, stage: str, project: str, group: str | None, config: dict
    ) -> "TrackerSet":
        opened = []
        for name in dict.fromkeys(n for n in names if n in OPENERS):
            try:
                opened.append(OPENERS[name](run_dir=run_dir, stage=stage, project=project, group=group, config=config))
            except ImportError:
                if name != "tensorboard":  # checked with the config; TensorBoard is optional
                    say(
                        f'{name} is not installed: pip install "align[{name}]"; the run goes on without it',
                        warning=True,
                    )
            except Exception as exc:  # a tracker that cannot start must not stop the run
                say(f"{name} could not start ({type(exc).__name__}: {exc}); the run goes on without it", warning=True)
        return cls(opened)

    def _each(self, call: str, *args) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, call)(*args)
            except Exception as exc:
                say(
                    f"{tracker.name} failed ({type(exc).__name__}: {exc}); metrics.jsonl keeps every figure, "
                    f"{tracker.name} gets no more of this run",
                    warning=True,
                )
                self.trackers.remove(tracker)

    def log(self, step: int, values: dict[str, Any]) -> None:
        numbers = scalar_values(values)
        if numbers:
            self._each("log", step, numbers)

    def log_table(self, name: str, step: int, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self._each("log_table", name, step, list(rows))

    def finish(self) -> None:
        self._each("finish")
        self.trackers = []
