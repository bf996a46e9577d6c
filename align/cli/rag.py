"""`align rag` sub-commands: index a corpus, answer questions, run a config.

align rag index  --corpus docs.jsonl --out runs/rag-index [--retriever hybrid]
align rag answer --index runs/rag-index --question "..." [--model runs/sft-demo]
align rag run    --config configs/rag_demo.yaml [key.sub=value ...]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from align.cli.common import build_config, console
from align.errors import AlignInputError
from align.runner import run_stage

app = typer.Typer(
    help="Retrieval-augmented baseline: index a corpus, answer questions, run a config.", no_args_is_help=True
)

RetrieverOption = typer.Option("bm25", "--retriever", "-r", help="bm25, dense or hybrid (reciprocal rank fusion).")


def _validated(cls, data: dict):
    """Flags -> a typed config section (bad values become one AlignInputError)."""
    from align.config.loader import validate

    return validate(cls, data, "command line")


@app.command("index")
def index(
    corpus: Path = typer.Option(
        ..., "--corpus", help="JSONL {id, text} (or .json/.csv/.parquet) or a folder of .txt/.md files."
    ),
    out: Path = typer.Option(
        Path("runs/rag-index"), "--out", "-o", help="Index folder; an existing index gets the new documents added."
    ),
    retriever: str = RetrieverOption,
    chunk_size: int = typer.Option(128, help="Words (or sentences, with --chunk-unit sentences) per chunk."),
    chunk_overlap: int = typer.Option(16, help="Words (or sentences) shared by consecutive chunks."),
    chunk_unit: str = typer.Option("words", help="'words', or 'sentences' (chunks of whole sentences)."),
    dense_model: str = typer.Option("minilm", help="Sentence-transformers name or path ('minilm' is bundled)."),
) -> None:
    """Build an index, or add a corpus's new documents to an existing one (no rebuild)."""
    from align.config.rag import RetrievalConfig
    from align.rag.answer import open_index

    settings = {
        "chunk_size": chunk_size,
        "chunk_overlap": chunk_overlap,
        "chunk_unit": chunk_unit,
        "dense_model": dense_model,
    }
    config = _validated(
        RetrievalConfig, {"corpus": str(corpus), "retriever": retriever, "index_dir": str(out), "index": settings}
    )
    _, info = open_index(config, out)
    table = Table(title="align rag index")
    table.add_column("")
    table.add_column("value", justify="right")
    for key, value in info.items():
        table.add_row(key, str(value))
    console.print(table)


@app.command("answer")
def answer(
    question: List[str] = typer.Option([], "--question", "-q", help="A question (repeatable)."),
    questions: Optional[Path] = typer.Option(None, "--questions", help="A QA/questions file with a 'question' column."),
    index_dir: Optional[Path] = typer.Option(None, "--index", help="A saved index (align rag index)."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Or a corpus to index in memory for this call."),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        "-m",
        help="Generator: model folder, run dir, hub id or demo:<size>/model. None: only retrieve.",
    ),
    retriever: str = RetrieverOption,
    top_k: int = typer.Option(3, "--top-k", "-k", help="Passages per question."),
    max_new_tokens: int = typer.Option(32, help="Longest answer in tokens."),
    template: Optional[str] = typer.Option(
        None, help="Prompt template with {passages} and {question} (default: prompt.template's)."
    ),
    chat: bool = typer.Option(True, "--chat/--no-chat", help="Wrap the prompt in the model's chat template."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per question instead of text."),
) -> None:
    """Retrieve passages for each question and (with --model) answer from them, with the sources."""
    from align.config.rag import GenerationConfig, IndexConfig, PromptConfig
    from align.rag.answer import answer_all, source_of
    from align.retrieval.corpus import load_corpus
    from align.retrieval.index import RetrievalIndex, components_for

    texts = list(question) + (_question_column(questions) if questions else [])
    if not texts:
        raise AlignInputError("give at least one --question TEXT or --questions FILE")
    if (index_dir is None) == (corpus is None):
        raise AlignInputError("give exactly one of --index DIR (a saved index) or --corpus PATH (indexed in memory)")
    components_for(retriever)
    prompt = _validated(PromptConfig, {"chat": chat, **({"template": template} if template else {})})
    generation = _validated(GenerationConfig, {"max_new_tokens": max_new_tokens})
    if top_k < 1:
        raise AlignInputError(f"--top-k must be at least 1, not {top_k}")
    if index_dir is not None:
        if not (index_dir / "index.json").is_file() and (index_dir / "index" / "index.json").is_file():
            index_dir = index_dir / "index"  # the run dir of `align rag run`
        idx = RetrievalIndex.load(index_dir)
    else:
        idx = RetrievalIndex.build(load_corpus(corpus), IndexConfig(), retriever)
    hits = idx.search(texts, top_k, retriever)
    answers = None
    if model is not None:
        from align.config.common import ModelConfig
        from align.demo import resolve_if_demo_ref
        from align.rag.generate import Generator

        generator = Generator(
            _validated(ModelConfig, {"name_or_path": resolve_if_demo_ref(model)}), generation, prompt.chat
        )
        answers = answer_all(generator, texts, hits, prompt)
    for i, (text, found) in enumerate(zip(texts, hits)):
        row = {
            "question": text,
            "answer": answers[i].answer if answers else None,
            "sources": [source_of(h) for h in found],
        }
        if as_json:
            print(json.dumps(row, ensure_ascii=False))
            continue
        console.rule(f"[bold]{text}")
        if answers:
            console.print(f"[bold green]answer:[/] {answers[i].answer}")
        for hit in found:
            console.print(
                f"  [{hit.rank}] {hit.chunk.id}  (score {hit.score:.4g})  {hit.chunk.text[:160]}",
                markup=False,
                highlight=False,
            )


def _question_column(path: Path) -> list[str]:
    from align.data.io import read_records, require_columns

    records = read_records(path)
    require_columns(records, ["question"], str(path))
    return [str(r["question"]) for r in records]


@app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (e.g. configs/rag_demo.yaml)."),
    resume: bool = typer.Option(False, "--resume", help="Continue in an existing output_dir."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Move an existing run dir aside and start fresh."),
) -> None:
    """Index + answer + score, all from one config. Extra `key.sub=value` arguments override it."""
    if config is None:
        raise AlignInputError("align rag run needs --config FILE (e.g. configs/rag_demo.yaml)")
    run_stage("rag", build_config("rag", config, ctx.args, resume=resume, overwrite=overwrite))
