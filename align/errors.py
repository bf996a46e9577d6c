"""Errors that mean "the user's input is wrong", as opposed to bugs.

The CLI turns an `AlignInputError` into one clear message and exit code 2 without a
traceback; any other exception is a bug (exit code 1).
"""


class AlignInputError(Exception):
    """Bad input: a config key, a data file line, a model path. The message says what and how to fix."""
