"""Keep the terminal for what a user can act on.

Third-party noise that no align user can do anything about is filtered here, each by its exact
text, never by muting a whole category: a warning about the user's own data or model (ours, or a
library's about their input) still shows. Progress: one bar per long phase, without the nested
evaluation bars that leave `ESC[A` cursor codes in logs.
"""

from __future__ import annotations

import logging
import os
import warnings

# (category, start of the message): raised inside transformers / TRL / PEFT, about their own code
THIRD_PARTY_WARNINGS = (
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
    (FutureWarning, r"Both `past_key_values` and `cache` are set"),
    (UserWarning, r"To copy construct from a tensor, it is recommended"),
    # PEFT saving a reward adapter whose backbone align merged into a temporary folder of its own
    (UserWarning, r"Could not find a config file in .*align-reward-backbone"),
)

# (logger, start of the message): library log lines about their own code
THIRD_PARTY_LOG_LINES = (
    # resizing the embeddings for an added pad token (masked everywhere it appears)
    ("transformers.modeling_utils", "The new embeddings will be initialized from a multivariate normal"),
)


class _KnownLines(logging.Filter):
    def __init__(self, starts: tuple[str, ...]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.starts)


class _WarningsAndAbove(logging.Filter):
    """bm25s sets its own logger to DEBUG on import ("Building index from IDs"): keep its warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


class _CpuAcceleratorNotice(logging.Filter):
    """DeepSpeed's "Setting accelerator to CPU. If you have GPU ..." on a CPU-only torch build.

    With a CUDA build the notice stays: there it means a GPU went undetected."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Setting accelerator to CPU"):
            return True
        import torch

        return torch.version.cuda is not None


def quiet_third_party() -> None:
    """Install the filters; call once at the start of a command."""
    for category, message in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in {logger for logger, _ in THIRD_PARTY_LOG_LINES}:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _KnownLines) for f in logger.filters):
            logger.addFilter(_KnownLines(tuple(start for n, start in THIRD_PARTY_LOG_LINES if n == name)))
    bm25s_logger = logging.getLogger("bm25s")
    if not any(isinstance(f, _WarningsAndAbove) for f in bm25s_logger.filters):
        bm25s_logger.addFilter(_WarningsAndAbove())
    deepspeed_logger = logging.getLogger("DeepSpeed")
    if not any(isinstance(f, _CpuAcceleratorNotice) for f in deepspeed_logger.filters):  # once per process
        deepspeed_logger.addFilter(_CpuAcceleratorNotice())
    # datasets' per-map bars ("Dropping fully masked examples ...") and transformers' weight
    # loading / shard writing bars: seconds each, many per stage. The training bar is ours.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def one_progress_bar(trainer) -> None:
    """Swap a HF Trainer's progress callback for one bar with the loss on it, no nested eval bar."""
    from transformers.trainer_callback import ProgressCallback

    class OneBar(ProgressCallback):
        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
            pass  # a second bar under the training bar is what writes ESC[A into logs

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or self.training_bar is None or not logs:
                return
            shown = {k: f"{v:.4g}" for k, v in logs.items() if k in ("loss", "eval_loss", "eval_accuracy")}
            if shown:
                self.training_bar.set_postfix(shown, refresh=False)

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(OneBar())
