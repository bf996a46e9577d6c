"""One overall progress line for the pipeline: stage i of n, elapsed, ETA.

The ETA weights each step by its typical share of the demo pipeline's wall time (the
`share` column of align.pipeline.steps.STEPS); once some steps have run, their measured
times scale the estimate for the rest.
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


def eta_seconds(shares: dict[str, float], done: dict[str, float], remaining: list[str]) -> float | None:
    """Remaining time, scaled from the steps measured so far (None before any step that took time).
    `shares`: each step's typical share of the wall time."""
    measured = {k: v for k, v in done.items() if k in shares and v > 0}
    share_done = sum(shares[k] for k in measured)
    if share_done <= 0:
        return None
    per_share = sum(measured.values()) / share_done
    return per_share * sum(shares.get(k, 0.05) for k in remaining)


class PipelineProgress:
    def __init__(self, shares: dict[str, float], console: Console | None = None):
        self.shares = shares
        self.steps = list(shares)
        self.console = console or Console()
        self.start = time.monotonic()

    def announce(self, step: str, done: dict[str, float], skipped: bool = False) -> None:
        index = self.steps.index(step) + 1
        remaining = self.steps[index - 1 :]
        eta = eta_seconds(self.shares, done, remaining)
        eta_text = f"ETA {format_seconds(eta)}" if eta is not None else "ETA -"
        state = "already done, skipped" if skipped else "running"
        self.console.rule(
            f"[bold]pipeline: stage {index}/{len(self.steps)} {step}[/] · {state} · "
            f"elapsed {format_seconds(time.monotonic() - self.start)} · {eta_text}"
        )
