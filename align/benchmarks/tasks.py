"""The benchmarks `align eval` runs, each with its data set (align.data.catalog), how it is scored
and its default protocol. Protocols follow lm-evaluation-harness where it has the task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from align.errors import AlignInputError


@dataclass(frozen=True)
class Benchmark:
    name: str
    data: str  # align.data.catalog name
    kind: Literal["choice", "generate", "perplexity"]
    headline: str  # the metric in the systems x benchmarks table
    shots: int = 0  # default few-shot examples
    max_shots: int = 0  # what the data file allows
    max_new_tokens: int = 0  # generative only
    checker: str = ""  # generative only: gsm8k | math | ifeval
    summary: str = ""


def _choice(name: str, headline: str = "acc_norm", summary: str = "") -> Benchmark:
    return Benchmark(name, name, "choice", headline, shots=0, max_shots=5, summary=summary)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        _choice("arc_easy", summary="ARC-Easy test, 4-way science questions"),
        _choice("arc_challenge", summary="ARC-Challenge test"),
        _choice("hellaswag", summary="HellaSwag validation, 4 sentence endings"),
        _choice("piqa", summary="PIQA validation, 2 solutions"),
        _choice("winogrande", "acc", summary="Winogrande validation, the blank filled two ways"),
        _choice("openbookqa", summary="OpenBookQA test"),
        _choice("boolq", "acc", summary="BoolQ validation, yes/no"),
        _choice("sciq", summary="SciQ validation"),
        _choice("csqa", summary="CommonsenseQA validation"),
        _choice("socialiqa", summary="Social IQa validation"),
        Benchmark(
            "gsm8k", "gsm8k", "generate", "exact_match", shots=5, max_shots=8, max_new_tokens=256,
            checker="gsm8k", summary="GSM8K test, chain of thought, numeric answer",
        ),
        Benchmark(
            "math500", "math500", "generate", "accuracy", shots=0, max_shots=4, max_new_tokens=512,
            checker="math", summary="MATH-500, \\boxed{} answer checked by Math-Verify",
        ),
        Benchmark(
            "ifeval", "ifeval", "generate", "score", shots=0, max_shots=0, max_new_tokens=1280,
            checker="ifeval", summary="IFEval, 541 prompts with verifiable instructions",
        ),
        Benchmark("wikipedia", "wikipedia", "perplexity", "bits_per_byte", summary="Wikipedia paragraphs"),
        Benchmark("lambada", "lambada", "perplexity", "bits_per_byte", summary="LAMBADA passages"),
    )
}  # fmt: skip

QUICK_SUITE: dict[str, dict] = {
    "ifeval": {"limit": 100, "max_new_tokens": 512},
    "gsm8k": {"limit": 100},
    "arc_easy": {"limit": 200},
    "arc_challenge": {"limit": 200},
    "hellaswag": {"limit": 200},
    "piqa": {"limit": 200},
    "wikipedia": {"limit": 200},
}
"""What the pipeline measures on every system with `benchmarks: quick`: seeded samples of a few
hundred items (IFEval's answers capped at 512 tokens); `full` runs the same benchmarks whole."""


def suite(kind: str) -> list[dict]:
    """The pipeline's benchmark entries for `benchmarks: quick | full` (none: [])."""
    if kind == "none":
        return []
    if kind == "quick":
        return [{"name": name, **options} for name, options in QUICK_SUITE.items()]
    return [{"name": name} for name in QUICK_SUITE]


def lookup(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise AlignInputError(f"unknown benchmark '{name}'; align eval knows: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name]
