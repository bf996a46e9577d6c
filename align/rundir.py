"""The run directory contract (docs/design.md): config, environment, metrics, atomic checkpoints.

Nothing here deletes user data: an existing run dir is refused unless resuming, and
`overwrite` moves the old one aside rather than removing it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

import torch.distributed as dist

from align.distributed import is_main_process, world_size
from align.errors import AlignInputError

CHECKPOINTS = "checkpoints"
FINAL_DIR = "final"  # the finished model of a run, what later stages load
COMPLETE_MARKER = "COMPLETE.json"
TRACKED_PACKAGES = (
    "align",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "deepspeed",
    "datasets",
    "gradio",
    "tokenizers",
)


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each package (None: not installed): env.json and `align env`."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@dataclass
class RunResult:
    """What a stage's run(config) returns to the CLI: where it wrote, and its headline figures."""

    run_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)


def default_run_dir(stage: str, now: datetime | None = None) -> Path:
    return Path("runs") / f"{stage}-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def atomic_write_text(path: Path, text: str, encoding: str | None = None) -> None:
    """Write via a temp file + rename, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding=encoding)
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, UTF-8, written whole or not at all."""
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def append_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Add rows to a log file (samples.jsonl); lines already written are never rewritten."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(row) + "\n" for row in rows))


def write_folder_atomically(final: Path, write: Callable[[Path], None], tmp_name: str | None = None) -> Path:
    """Let `write(tmp)` fill a temp folder beside `final`, then swap it in.

    A crash leaves either the old folder or the new one, never half of one: an existing
    folder is moved aside only once the new one is complete, and removed after the swap. An
    exception in `write` removes the temp folder (a killed process leaves it, named
    `.<name>.tmp-<pid>` unless tmp_name is given, for the next writer to clear).
    """
    tmp = final.with_name(tmp_name or f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    return final


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a folder as the hash of its files' relative names and hashes."""
    digest = hashlib.sha256()
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(child.relative_to(path)).encode())
            digest.update(sha256_of(child).encode())
        return digest.hexdigest()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_sha(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info(data_files: Iterable[str | Path] = ()) -> dict[str, Any]:
    from align.device import available_cores, detect_device

    versions = package_versions(TRACKED_PACKAGES)
    hashes = {str(p): sha256_of(Path(p)) for p in data_files if Path(p).exists()}
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "device": detect_device().as_dict(),
        "cpu_count": available_cores(),
        "git_sha": git_sha(Path(__file__).parent),
        "data_sha256": hashes,
        "argv": sys.argv,
        "created": datetime.now().isoformat(timespec="seconds"),
    }


def _prepare(output_dir: str | Path | None, stage: str, overwrite: bool, resume: str) -> Path:
    """Rank 0's part of RunDir.create: check, move aside if told, create."""
    path = Path(output_dir) if output_dir else default_run_dir(stage)
    if path.exists() and not path.is_dir():
        raise AlignInputError(f"output_dir {path} exists and is a file; choose another output.output_dir")
    non_empty = path.is_dir() and any(path.iterdir())
    if non_empty and resume == "never":
        if not overwrite:
            raise AlignInputError(
                f"output_dir {path} already holds a run; pass --resume to continue it, "
                f"--overwrite to move it aside and start again, or choose another output.output_dir"
            )
        aside = path.with_name(f"{path.name}.old-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
        path.rename(aside)
        print(f"moved the existing run dir aside to {aside}")
    path.mkdir(parents=True, exist_ok=True)
    return path


class RunDir:
    """One stage run on disk. Only rank 0 writes; other ranks get the same paths."""

    def __init__(self, path: Path, stage: str = ""):
        self.path = Path(path)
        self.stage = stage or self.path.name.split("-")[0]

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls, output_dir: str | Path | None, stage: str, overwrite: bool = False, resume: str = "never"
    ) -> "RunDir":
        """Make the run dir; refuse to clobber a non-empty one unless resuming or told to overwrite.

        Under a multi-process launch rank 0 alone checks and creates it: another rank would see
        rank 0's fresh files as "a previous run", or pick a different timestamped name.
        """
        if world_size() == 1:
            return cls(_prepare(output_dir, stage, overwrite, resume), stage)
        if dist.is_available() and dist.is_initialized():
            box: list = [None]
            if is_main_process():
                try:
                    box[0] = str(_prepare(output_dir, stage, overwrite, resume))
                except AlignInputError as exc:
                    box[0] = exc
            dist.broadcast_object_list(box, src=0)
            if isinstance(box[0], AlignInputError):
                raise box[0]
            return cls(Path(box[0]), stage)
        if output_dir is None:
            raise AlignInputError(
                f"a multi-process launch needs output.output_dir: the ranks cannot agree on a timestamped {stage} run dir"
            )
        return cls(_prepare(output_dir, stage, overwrite, resume) if is_main_process() else Path(output_dir), stage)

    # -- files ------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    def write_config(self, config_yaml: str) -> None:
        if is_main_process():
            atomic_write_text(self.file("config.yaml"), config_yaml)

    def write_env(self, data_files: Iterable[str | Path] = ()) -> None:
        if is_main_process():
            atomic_write_json(self.file("env.json"), environment_info(data_files))

    def write_json(self, name: str, obj: Any) -> Path:
        if is_main_process():
            atomic_write_json(self.file(name), obj)
        return self.file(name)

    def write_text(self, name: str, text: str) -> Path:
        """A report or other text file, written atomically."""
        path = self.file(name)
        atomic_write_text(path, text)
        return path

    def metrics(self, config=None) -> "MetricsLogger":
        """metrics.jsonl, and the trackers `config.output.report_to` names (rank 0 only): one
        tracker run for this stage run, with the resolved config."""
        trackers = None
        if config is not None and is_main_process():
            from align.trackers import TrackerSet

            output = config.output
            trackers = TrackerSet.open(
                output.report_to,
                self.path,
                self.stage,
                output.project,
                output.group,
                {**config.model_dump(mode="json"), "run_dir": str(self.path.resolve())},
            )
        return MetricsLogger(self.file("metrics.jsonl"), trackers)

    def trim_metrics(self, step: int) -> None:
        """On resume from `step`: drop metrics logged after it (the lost continuation, which is
        redone); the old file is kept aside. Rank 0 only."""
        path = self.file("metrics.jsonl")
        if not is_main_process() or not path.is_file():
            return
        records = path.read_text().splitlines()
        kept = [line for line in records if line.strip() and json.loads(line).get("step", 0) <= step]
        if len(kept) < len(records):
            shutil.copy2(path, path.with_name(f"metrics.before-resume-{datetime.now():%Y%m%d-%H%M%S}.jsonl"))
            atomic_write_text(path, "".join(line + "\n" for line in kept))

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS

    def save_checkpoint(self, step: int, write: Callable[[Path], None], keep: int | None = None) -> Path:
        """Let `write(tmp_dir)` fill a temp dir, mark it complete, then rename it to step-N atomically."""
        final = self.checkpoints_dir / f"step-{step}"
        if not is_main_process():
            return final

        def write_and_mark(tmp: Path) -> None:
            write(tmp)
            atomic_write_json(tmp / COMPLETE_MARKER, {"step": step, "time": time.time()})

        write_folder_atomically(final, write_and_mark, tmp_name=f".tmp-step-{step}-{os.getpid()}")
        if keep is not None:
            for stale in self.complete_checkpoints()[:-keep]:
                shutil.rmtree(stale, ignore_errors=True)
        return final

    def complete_checkpoints(self) -> list[Path]:
        """Checkpoints that finished writing, oldest first (temp dirs and half-written ones are ignored)."""
        return list_complete_checkpoints(self.checkpoints_dir)

    def latest_checkpoint(self) -> Path | None:
        found = self.complete_checkpoints()
        return found[-1] if found else None


def list_complete_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        if child.is_dir() and child.name.startswith("step-") and (child / COMPLETE_MARKER).is_file():
            try:
                found.append((int(child.name.removeprefix("step-")), child))
            except ValueError:
                continue
    return [path for _, path in sorted(found)]


class MetricsLogger:
    """Append one JSON object per logged step to metrics.jsonl, and hand the numbers to the
    run's trackers (TensorBoard, W&B, MLflow, Trackio)."""

    def __init__(self, path: Path, trackers=None):
        self.path = path
        self.trackers = trackers

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not is_main_process():
            return
        record = {"step": step, "time": round(time.time(), 3), **values}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, default=float) + "\n")
            handle.flush()
        if self.trackers is not None:
            self.trackers.log(step, values)

    def log_table(self, name: str, step: int, rows: list[dict[str, Any]]) -> None:
        """Sample completions with their rewards, for the trackers' table views."""
        if self.trackers is not None and is_main_process():
            self.trackers.log_table(name, step, rows)

    def close(self) -> None:
        if self.trackers is not None:
            self.trackers.finish()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
