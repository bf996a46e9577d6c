"""The `benchmarks:` entries of `align eval` (and the pipeline's benchmark suite)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from align.config.common import Section


class BenchmarkSpec(Section):
    """One public benchmark; a plain name takes its default protocol (docs: Benchmarks)."""

    name: str = Field(description="A benchmark align eval knows (align eval's docs list them), e.g. gsm8k, ifeval.")
    shots: int | None = Field(None, ge=0, description="Few-shot examples; None = the benchmark's default.")
    limit: int | None = Field(
        None, gt=0, description="Score a seeded sample of this many items (overrides eval's `limit`)."
    )
    max_new_tokens: int | None = Field(None, ge=1, description="Generative benchmarks: longest answer in tokens.")
    chat: bool | None = Field(
        None,
        description="Prompt through the chat template; None = generative benchmarks use it when the tokenizer "
        "has one, log-likelihood and perplexity benchmarks read raw text.",
    )

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        from align.benchmarks.tasks import BENCHMARKS

        if value not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {value!r}; known: {', '.join(sorted(BENCHMARKS))}")
        return value

    @model_validator(mode="after")
    def _shots_allowed(self) -> "BenchmarkSpec":
        from align.benchmarks.tasks import BENCHMARKS

        benchmark = BENCHMARKS[self.name]
        if self.shots is not None and self.shots > benchmark.max_shots:
            raise ValueError(f"{self.name}: at most {benchmark.max_shots} shots (the examples its data ships)")
        if benchmark.kind == "choice" and self.shots not in (None, 0, benchmark.max_shots):
            raise ValueError(f"{self.name}: shots must be 0 or {benchmark.max_shots} (its file's few-shot prefix)")
        return self


def benchmark_list(value):
    """`[gsm8k, {name: arc_easy, shots: 5}]` or `{gsm8k: {}, arc_easy: {shots: 5}}` -> a list of mappings."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, dict):
        value = [{"name": name, **(options or {})} for name, options in value.items()]
    if isinstance(value, list):
        return [{"name": item} if isinstance(item, str) else item for item in value]
    return value
