"""`align pipeline` and `align demo` configs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from align.config.common import OutputConfig, Section


class PipelineConfig(Section):
    """`align pipeline`: the whole chain on one config."""

    world: Literal["demo", "tiny"] = Field("demo", description="Demo world to build and use.")
    annotation: Literal["simulated", "human"] = Field("simulated", description="Who ranks the candidates.")
    output: OutputConfig = Field(default_factory=OutputConfig)


class DemoConfig(Section):
    """`align demo`: build the demo world."""

    size: Literal["demo", "tiny"] = "demo"
    seed: int = 0
