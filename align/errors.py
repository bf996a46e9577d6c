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
