"""`align ppo` (not yet implemented; see its issue)."""

from align.rundir import RunResult


def run(config) -> RunResult:
    raise NotImplementedError("align ppo is not yet implemented")
