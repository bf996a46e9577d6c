"""Which pipeline steps are finished, persisted after each one (pipeline_state.json).

`--resume` skips finished steps; a step that was interrupted runs again and its stage
resumes from its own newest checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from align.rundir import atomic_write_json

STATE_FILE = "pipeline_state.json"


@dataclass
class PipelineState:
    path: Path
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> "PipelineState":
        path = root / STATE_FILE
        steps = json.loads(path.read_text())["steps"] if path.is_file() else {}
        return cls(path=path, steps=steps)

    def done(self, step: str) -> bool:
        return self.steps.get(step, {}).get("status") == "done"

    def outputs(self, step: str) -> dict[str, Any]:
        return self.steps.get(step, {}).get("outputs", {})

    def started(self, step: str) -> None:
        self.steps.setdefault(step, {})["status"] = "running"
        self.save()

    def finish(self, step: str, seconds: float, outputs: dict[str, Any]) -> None:
        self.steps[step] = {"status": "done", "seconds": round(seconds, 2), "outputs": outputs}
        self.save()

    def seconds(self) -> dict[str, float]:
        return {name: info.get("seconds", 0.0) for name, info in self.steps.items() if info.get("status") == "done"}

    def save(self) -> None:
        atomic_write_json(self.path, {"steps": self.steps})
