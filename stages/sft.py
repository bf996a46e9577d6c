"""`align sft` (not yet implemented; see its issue)."""

from align.rundir import RunResult


def run(config) -> RunResult:
    raise NotImplementedError("align sft is not yet implemented")
