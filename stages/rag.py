"""`align rag` (not yet implemented; see its issue)."""

from align.rundir import RunResult


def run(config) -> RunResult:
    raise NotImplementedError("align rag is not yet implemented")
