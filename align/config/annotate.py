"""`align annotate` config: the ranking app and its store."""

from __future__ import annotations


from pydantic import Field

from align.config.common import OutputConfig, Section


class AnnotateConfig(Section):
    """`align annotate`: the ranking app and its store."""

    db: str = Field("sqlite:///annotations.db", description="SQLAlchemy URL or a path to an SQLite file.")
    min_annotations_per_item: int = Field(2, ge=1, description="Rankings wanted per item (the quota).")
    guidelines: str = Field("Rank the responses from best (1) to worst. Equal ranks mean a tie.", description="Markdown shown to annotators.")
    output: OutputConfig = Field(default_factory=OutputConfig)
