"""`align rag` and `align eval` configs.

RetrievalConfig is shared: `align rag` answers with one model, `align eval` uses the same
retrieval settings for every system marked `rag: true`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from align.config.benchmarks import BenchmarkSpec, benchmark_list
from align.config.common import INPUT_PATH, ModelConfig, OutputConfig, Section

DEFAULT_RAG_TEMPLATE = "Answer the question using the passages.\n\n{passages}\n\nQuestion: {question}"


class IndexConfig(Section):
    """How chunks and vectors are built; saved with an index and checked when it is reused."""

    chunk_size: int = Field(128, ge=1, description="Words (or sentences, see chunk_unit) per chunk.")
    chunk_overlap: int = Field(
        16, ge=0, description="Words (or sentences) shared by consecutive chunks; smaller than chunk_size."
    )
    chunk_unit: Literal["words", "sentences"] = Field(
        "words", description="What chunk_size counts: 'words', or whole 'sentences' (a fact is never cut in two)."
    )
    dense_model: str = Field(
        "minilm", description="Sentence-transformers name or path; 'minilm' = all-MiniLM-L6-v2 bundled offline."
    )
    bm25_k1: float = Field(1.5, gt=0, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation.")
    rrf_k: float = Field(60.0, gt=0, description="Reciprocal rank fusion constant for the hybrid retriever.")
    encode_batch_size: int = Field(64, ge=1, description="Chunks per batch when computing dense embeddings.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> "IndexConfig":
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        return self


class RetrievalConfig(Section):
    """Where passages come from."""

    corpus: str = Field(
        description="JSONL {id, text} (or .json/.csv/.parquet) or a folder of .txt/.md files.",
        json_schema_extra=INPUT_PATH,
    )
    retriever: Literal["bm25", "dense", "hybrid"] = Field(
        "bm25", description="Retrieval method; hybrid = reciprocal rank fusion of both."
    )
    top_k: int = Field(3, ge=1, description="Passages put into the prompt (and k of recall@k).")
    index_dir: str | None = Field(
        None,
        description="Saved index to reuse; documents of `corpus` not in it are added incrementally. None: build in the run dir.",
    )
    index: IndexConfig = Field(default_factory=IndexConfig)
    relevance: Literal["auto", "labels", "answer", "doc_id_in_question"] = Field(
        "auto",
        description="Which passages count as relevant for recall@k/MRR: 'labels' = the QA row's doc_id(s); 'answer' = the "
        "passage contains an answer; 'doc_id_in_question' = the passage's document id occurs in the question "
        "(entity-named docs); 'auto' = labels when the QA rows have them, else answer.",
    )


class PromptConfig(Section):
    """How a question (and passages) become the model's input."""

    template: str = Field(
        DEFAULT_RAG_TEMPLATE, description="Prompt with retrieval; must contain {passages} and {question}."
    )
    plain_template: str = Field("{question}", description="Prompt without retrieval; must contain {question}.")
    passage_template: str = Field(
        "[{rank}] {text}", description="One passage; placeholders {rank}, {text}, {doc_id}, {chunk_id}."
    )
    passage_separator: str = Field("\n", description="Between passages.")
    chat: bool = Field(
        True, description="Wrap the prompt as one user turn in the model's chat template (else raw text)."
    )

    @field_validator("template")
    @classmethod
    def _rag_placeholders(cls, value: str) -> str:
        missing = [p for p in ("{passages}", "{question}") if p not in value]
        if missing:
            raise ValueError(f"the RAG template needs the placeholder(s) {', '.join(missing)}")
        return value

    @field_validator("plain_template")
    @classmethod
    def _plain_placeholder(cls, value: str) -> str:
        if "{question}" not in value:
            raise ValueError("the plain template needs the placeholder {question}")
        return value


class GenerationConfig(Section):
    max_new_tokens: int = Field(
        32, ge=1, description="Longest answer, in tokens (greedy decoding: results are deterministic)."
    )
    batch_size: int = Field(
        8, ge=1, description="Questions generated together (left-padded); latency is reported per question."
    )
    first_line_only: bool = Field(True, description="Keep the answer up to its first line break.")


class RAGConfig(RetrievalConfig):
    """`align rag run`: index a corpus and answer a question set (or only retrieve, without a model)."""

    model: ModelConfig | None = Field(None, description="Generator; None = retrieval only.")
    questions: str | None = Field(
        None,
        description="QA file {question, answer|answers} to answer and score; None = only build the index.",
        json_schema_extra=INPUT_PATH,
    )
    max_questions: int | None = Field(None, gt=0, description="Answer only the first N questions (quick runs).")
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)


class SystemConfig(Section):
    """One system of `align eval`: a model, with or without retrieval."""

    model: str = Field(description="Hub id, model folder, an align run dir (its final/) or 'demo:<size>/model'.")
    rag: bool = Field(
        False, description="Retrieve passages (settings in eval's `retrieval`) and put them in the prompt."
    )
    optional: bool = Field(
        False, description="Skip this system with a note when its model does not exist (e.g. PPO not run yet)."
    )
    chat: bool | None = Field(
        None, description="Use the chat template for this system; None = prompt.chat (e.g. false for a raw base model)."
    )


class EvalConfig(Section):
    """`align eval`: several systems on the same QA sets and public benchmarks, side by side."""

    qa: dict[str, str] = Field(
        default_factory=dict,
        description="QA sets {question, answer|answers}: name -> file (a list of files is named by file stem). Each is reported separately.",
    )
    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=list,
        description="Public benchmarks run for every system, e.g. [ifeval, gsm8k, arc_easy, hellaswag, wikipedia] "
        "(`align data pull NAME` caches each once); an entry may set shots, limit, max_new_tokens, chat.",
    )
    limit: int | None = Field(
        None, gt=0, description="Score a seeded sample of this many items of each benchmark (quick runs); None = all."
    )
    seed: int = Field(0, description="Seed of the benchmark samples (the same items for every system).")
    scoring_batch_size: int = Field(
        8, ge=1, description="Sequences per forward pass when scoring log-likelihood and perplexity benchmarks."
    )
    systems: dict[str, SystemConfig] = Field(
        description="Name -> system; a plain string is a model without retrieval. E.g. base, base+rag, sft, sft+rag, ppo."
    )
    retrieval: RetrievalConfig | None = Field(None, description="Retrieval for systems with rag: true.")
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype for every system ('auto': bf16 on a GPU, fp32 on CPU)."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="Arithmetic of generation and scoring for every system: 'auto' is bf16 autocast where the "
        "hardware does bf16 natively (GPU, or a CPU with AVX-512 BF16 / AMX / ARM BF16), fp32 otherwise.",
    )
    max_questions: int | None = Field(
        None, gt=0, description="Use only the first N questions of each QA set (quick runs)."
    )
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("qa", mode="before")
    @classmethod
    def _name_files(cls, value):
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            names = [Path(str(v)).stem for v in value]
            if len(set(names)) != len(names):
                raise ValueError("two QA files share a file name; give qa as a mapping name -> file")
            return dict(zip(names, value))
        return value

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _benchmark_names(cls, value):
        return benchmark_list(value)

    @field_validator("systems", mode="before")
    @classmethod
    def _shorthand(cls, value):
        if isinstance(value, dict):
            return {name: {"model": spec} if isinstance(spec, str) else spec for name, spec in value.items()}
        return value

    @model_validator(mode="after")
    def _retrieval_when_needed(self) -> "EvalConfig":
        if not self.qa and not self.benchmarks:
            raise ValueError("give at least one QA file (qa:) or public benchmark (benchmarks:)")
        if not self.systems:
            raise ValueError("systems: give at least one system, e.g. {base: demo:demo/model}")
        needing = [name for name, s in self.systems.items() if s.rag]
        if needing and self.retrieval is None:
            raise ValueError(
                f"systems {', '.join(needing)} use rag but there is no `retrieval:` section (corpus, retriever, top_k)"
            )
        return self
