"""`align reward` (not yet implemented; see its issue)."""

from align.rundir import RunResult


def run(config) -> RunResult:
    raise NotImplementedError("align reward is not yet implemented")
