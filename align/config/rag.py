"""`align rag` and `align eval` configs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from align.config.common import ModelConfig, OutputConfig, Section


class RAGConfig(Section):
    """`align rag`: retrieval-augmented generation baseline."""

    corpus: str = Field(description="JSONL {id, text} or a folder of .txt/.md files.")
    retriever: Literal["bm25", "dense", "hybrid"] = Field("bm25", description="Retrieval method; hybrid = reciprocal rank fusion.")
    top_k: int = Field(3, ge=1, description="Passages put into the prompt.")
    model: ModelConfig | None = Field(None, description="Generator; None = retrieval only.")
    output: OutputConfig = Field(default_factory=OutputConfig)


class EvalConfig(Section):
    """`align eval`: several systems on one QA set, side by side."""

    qa: list[str] = Field(description="QA files {question, answer|answers}.")
    systems: dict[str, str] = Field(default_factory=dict, description="Name -> model path or run dir.")
    output: OutputConfig = Field(default_factory=OutputConfig)
