"""What binds an HF Trainer to the run-dir contract, for every HF-Trainer stage (SFT, reward).

- resume_checkpoint: the resume rules ('never', 'auto' = newest complete checkpoint, or a path),
  trimming metrics.jsonl back to the checkpoint so a resumed run continues the same curve.

- MetricsCallback: every log -> metrics.jsonl + TensorBoard (rank 0).
- CheckpointCallback: HF writes checkpoints/checkpoint-N; once every rank has finished
  writing, rank 0 adds COMPLETE.json and renames it to checkpoints/step-N, so a crash mid-save
  never leaves something that looks resumable; old complete ones are rotated.
- run_dir_callbacks: the list every HF-Trainer stage passes (the three above, in order);
  check_early_stopping: the input check that goes with it.
- EarlyStopping: stop after `patience` evaluations without a lower eval_loss and end with the
  best evaluation's weights. Its counters are saved in the checkpoint (ExportableState), so a
  resumed run stops where the original would.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from align.distributed import barrier, is_main_process, say
from align.errors import AlignInputError
from align.models import trainable_copy
from align.rundir import (
    COMPLETE_MARKER,
    MetricsLogger,
    RunDir,
    list_complete_checkpoints,
)

_SKIP = {"total_flos", "epoch"}


class MetricsCallback(TrainerCallback):
    """Forward the trainer's logs (train loss, lr, grad norm, eval loss...) to our MetricsLogger."""

    def __init__(self, logger: MetricsLogger):
        self.logger = logger

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs):
        if not logs:
            return
        values = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and k not in _SKIP}
        if "epoch" in logs:
            values["epoch"] = round(float(logs["epoch"]), 4)
        self.logger.log(state.global_step, values)

    def on_train_end(self, args, state, control, **kwargs):
        self.logger.close()


class CheckpointCallback(TrainerCallback):
    """Turn HF's checkpoint-N into our atomic checkpoints/step-N (+ COMPLETE.json), keep the newest `keep`."""

    def __init__(self, checkpoints_dir: Path, keep: int | None):
        self.dir = Path(checkpoints_dir)
        self.keep = keep

    def on_save(self, args, state, control, **kwargs):
        barrier()  # every rank's shards (DeepSpeed) are on disk before the rename
        if is_main_process():
            publish_checkpoint(self.dir, state.global_step, self.keep)
        barrier()


def publish_checkpoint(checkpoints_dir: Path, step: int, keep: int | None) -> Path:
    """checkpoint-N -> step-N with a COMPLETE marker, atomically; rotate old complete ones."""
    source = checkpoints_dir / f"checkpoint-{step}"
    final = checkpoints_dir / f"step-{step}"
    (source / COMPLETE_MARKER).write_text(json.dumps({"step": step, "time": time.time()}) + "\n")
    if final.exists():  # the same step saved twice (e.g. the last step): keep the newer
        aside = checkpoints_dir / f".old-step-{step}-{os.getpid()}"
        final.rename(aside)
        os.replace(source, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(source, final)
    if keep is not None:
        for stale in list_complete_checkpoints(checkpoints_dir)[:-keep]:
            shutil.rmtree(stale, ignore_errors=True)
    return final


class EarlyStopping(TrainerCallback, ExportableState):
    """Stop when eval_loss has not improved (by more than `min_delta`) for `patience` evaluations,
    and end with the best evaluation's weights, not the last ones.

    The trainable parameters are copied to CPU memory at each new best (a LoRA adapter is small;
    a full model costs one copy of its trainable weights) and put back when training ends, so
    final/ is the model of the lowest validation loss. Under DeepSpeed ZeRO-3 the parameters are
    sharded placeholders and a resumed run has no copy of a best from before the resume: then
    the last weights stay, and `restored_step` is None.
    """

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience = patience
        self.min_delta = min_delta
        self.best: float | None = None
        self.bad_evals = 0
        self.stopped_at: int | None = None
        self.best_step: int | None = None
        self.restored_step: int | None = None
        self._best_weights: dict[str, Any] | None = None

    def on_evaluate(self, args, state, control, metrics: dict[str, float] | None = None, model=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if loss is None:
            return
        if self.best is None or loss < self.best - self.min_delta:
            self.best, self.bad_evals, self.best_step = loss, 0, state.global_step
            self._best_weights = trainable_snapshot(model)
        else:
            self.bad_evals += 1
        if self.bad_evals >= self.patience:
            self.stopped_at = state.global_step
            control.should_training_stop = True

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self._best_weights is None or model is None or self.bad_evals == 0:
            return  # no copy, or the last evaluation was the best: the weights are already it
        named = dict(model.named_parameters())
        for name, value in self._best_weights.items():
            named[name].data.copy_(value.to(named[name].device, named[name].dtype))
        self.restored_step = self.best_step

    def state(self) -> dict:
        return {
            "args": {"patience": self.patience, "min_delta": self.min_delta},
            "attributes": {
                "best": self.best,
                "bad_evals": self.bad_evals,
                "stopped_at": self.stopped_at,
                "best_step": self.best_step,
            },
        }


def early_stopping_summary(trainer) -> dict[str, int]:
    """What early stopping did, for a stage's summary: the step it stopped at (if it did) and
    the step whose weights the run ended with (if they are not the last ones)."""
    stopper = next((c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStopping)), None)
    out = {}
    if stopper and stopper.stopped_at:
        out["early_stopped_at"] = stopper.stopped_at
    if stopper and stopper.restored_step:
        out["best_weights_from_step"] = stopper.restored_step
    return out


def trainable_snapshot(model) -> dict[str, Any] | None:
    """CPU copies of the trainable parameters, or None where they are ZeRO-3 shards (no full tensor here)."""
    if model is None or any(hasattr(p, "ds_id") or p.numel() == 0 for p in model.parameters() if p.requires_grad):
        return None
    return trainable_copy(model)


def resume_checkpoint(run_dir: RunDir, resume: str) -> Path | None:
    """'never' -> None; 'auto' -> newest complete checkpoint (None if there is none); else that path."""
    if resume == "never":
        return None
    if resume == "auto":
        found = run_dir.latest_checkpoint()
    else:
        found = Path(resume)
        if not (found / COMPLETE_MARKER).is_file():
            raise AlignInputError(f"output.resume = {resume}: not a complete checkpoint (no COMPLETE.json)")
    if found is not None:
        say(f"resuming from {found}")
        run_dir.trim_metrics(int(found.name.removeprefix("step-")))
    return found


def check_early_stopping(config) -> None:
    """Early stopping reads validation loss, so it needs validation data (checked before any work)."""
    if config.training.early_stopping_patience and not (config.data.validation or config.data.validation_fraction):
        raise AlignInputError(
            "training.early_stopping_patience needs validation data: set data.validation or data.validation_fraction"
        )


def run_dir_callbacks(config, run_dir: RunDir, extra: Sequence[Any] = ()) -> list[TrainerCallback]:
    """The callbacks that bind an HF Trainer to the run dir: metrics, atomic checkpoints, then
    `extra` (tests crash runs with them), then early stopping when configured."""
    callbacks = [
        MetricsCallback(run_dir.metrics(config)),
        CheckpointCallback(run_dir.checkpoints_dir, config.training.save_total_limit),
        *extra,
    ]
    if config.training.early_stopping_patience:
        callbacks.append(EarlyStopping(config.training.early_stopping_patience))
    return callbacks
