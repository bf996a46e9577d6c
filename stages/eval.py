"""`align eval` (not yet implemented; see its issue)."""

from align.rundir import RunResult


def run(config) -> RunResult:
    raise NotImplementedError("align eval is not yet implemented")
