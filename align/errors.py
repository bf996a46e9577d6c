"""The two kinds of failure a user can act on, as opposed to bugs.

    AlignInputError  the input is wrong (a config key, a data line, a model path): exit 2
    AlignRunError    the input was accepted but the run failed (a training step diverged): exit 3

The CLI turns either into one message without a traceback (align.cli.main is the one exit
point); any other exception is a bug and exits 1 with its traceback. A run error leaves the
run dir and its checkpoints as they were, so `--resume` or a changed config can continue.
"""

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_RUN_FAILED = 0, 1, 2, 3


class AlignInputError(Exception):
    """Bad input: a config key, a data file line, a model path. The message says what and how to fix."""


class AlignRunError(Exception):
    """A run that started on valid input and then failed; the message says what to try."""


class TrainingDiverged(AlignRunError):
    """A NaN/inf loss, gradient, score or reward: the step is refused so the weights stay as they were."""


OUT_OF_MEMORY_ADVICE = (
    "lower what each step holds: training.batch_size (keep the global batch with "
    "training.gradient_accumulation_steps), data.max_length, rollout.batch_size or rollout.max_new_tokens; "
    "training.gradient_checkpointing=true; update.mode=lora (qlora on CUDA); on several GPUs "
    "deepspeed=configs/deepspeed/zero3.json (zero3_offload.json). Checkpoints already written are kept: "
    "--resume goes on from the newest"
)


def out_of_memory(exc: BaseException) -> bool:
    """The device or the host ran out of memory (CUDA's OutOfMemoryError, Python's MemoryError, or the
    CPU allocator's RuntimeError): a run that failed, with advice, not a bug in align."""
    if isinstance(exc, MemoryError):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc)
    return (
        type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text.lower() or "can't allocate memory" in text
    )
