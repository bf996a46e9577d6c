"""One overall progress line for the pipeline: stage i of n, elapsed, ETA.

Each step has a typical time (seconds of the demo pipeline on 2 idle CPU cores, the `share`
column of align.pipeline.steps.STEPS). Before anything was measured the ETA is the sum of the
remaining typical times (a cached world takes 0 s and measures nothing); then the measured
stages scale it (measured / typical). The world build alone scales it by the square root of
its ratio: pretraining speed differs from the stages' (a 2x slower world build came with 1.2x
slower stages in a recorded run), so it is weak evidence about the rest.
"""

from __future__ import annotations

import time

from rich.console import Console


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def eta_seconds(typical: dict[str, float], done: dict[str, float], remaining: list[str], base: str = "world") -> float:
    """Seconds left for the `remaining` steps: their typical times, scaled by what was measured."""
    measured = {k: v for k, v in done.items() if k in typical and v > 0 and typical[k] > 0}
    stages = {k: v for k, v in measured.items() if k != base}
    if stages:
        scale = sum(stages.values()) / sum(typical[k] for k in stages)
    elif base in measured:
        scale = (measured[base] / typical[base]) ** 0.5
    else:
        scale = 1.0
    return scale * sum(typical.get(k, 0.0) for k in remaining)


class PipelineProgress:
    def __init__(self, shares: dict[str, float], console: Console | None = None):
        self.shares = shares
        self.steps = list(shares)
        self.console = console or Console()
        self.start = time.monotonic()

    def announce(self, step: str, done: dict[str, float], skipped: bool = False) -> None:
        index = self.steps.index(step) + 1
        remaining = self.steps[index - 1 :]
        eta_text = f"ETA {format_seconds(eta_seconds(self.shares, done, remaining))}"
        state = "already done, skipped" if skipped else "running"
        self.console.rule(
            f"[bold]pipeline: stage {index}/{len(self.steps)} {step}[/] · {state} · "
            f"elapsed {format_seconds(time.monotonic() - self.start)} · {eta_text}"
        )
