"""The RAG step shared by `align rag` and `align eval`: open an index, retrieve, prompt, generate.

`open_index` reuses a saved index when one is named (adding the corpus's new documents
incrementally) and builds one otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from align.config.rag import PromptConfig, RetrievalConfig
from align.errors import AlignInputError
from align.rag.generate import Generator
from align.rag.prompt import build_prompt
from align.retrieval.corpus import Document, load_corpus
from align.retrieval.index import Hit, RetrievalIndex, changed_settings


@dataclass
class Answer:
    question: str
    answer: str
    sources: list[dict] = field(default_factory=list)  # [{rank, chunk_id, doc_id, score}]
    seconds: float = 0.0  # retrieval + generation, per question
    truncated: bool = False


def open_index(
    retrieval: RetrievalConfig, default_dir: Path, progress: bool = True, docs: list[Document] | None = None
) -> tuple[RetrievalIndex, dict]:
    """The index for `retrieval` (saved in index_dir, or built into default_dir) and what was done.

    `docs`: the corpus already loaded (stages load it before creating their run dir).
    """
    docs = docs if docs is not None else load_corpus(retrieval.corpus)
    target = Path(retrieval.index_dir) if retrieval.index_dir else default_dir
    started = time.perf_counter()
    if (target / "index.json").is_file():
        index = RetrievalIndex.load(target)
        changed = changed_settings(index.settings, retrieval.index)
        if changed:
            raise AlignInputError(
                f"the saved index {target} was built with other settings ({'; '.join(changed)}); "
                "use the same index settings, or a new index_dir to build a fresh index"
            )
        index.settings = retrieval.index  # same build settings; query-time ones (rrf_k, batch size) from the config
        before = set(index.methods)
        added_docs, added_chunks = index.add(docs, progress=progress)
        index.ensure(retrieval.retriever, progress=progress)
        action = "reused" if not added_docs and set(index.methods) == before else "extended"
    else:
        index = RetrievalIndex.build(docs, retrieval.index, retrieval.retriever, progress=progress)
        added_docs, added_chunks, action = len(docs), len(index.chunks), "built"
    if action != "reused":
        index.save(target)
    info = {
        "index_dir": str(target),
        "action": action,
        "documents": len(index.doc_hashes),
        "chunks": len(index.chunks),
        "added_documents": added_docs,
        "added_chunks": added_chunks,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return index, info


def retrieve(
    index: RetrievalIndex, questions: Sequence[str], retrieval: RetrievalConfig
) -> tuple[list[list[Hit]], float]:
    """Top-k hits per question and the retrieval time per question."""
    started = time.perf_counter()
    hits = index.search(list(questions), retrieval.top_k, retrieval.retriever)
    return hits, (time.perf_counter() - started) / max(len(questions), 1)


def answer_all(
    generator: Generator,
    questions: Sequence[str],
    hits: Sequence[Sequence[Hit]] | None,
    prompt: PromptConfig,
    retrieval_seconds: float = 0.0,
    progress: bool = False,
    desc: str = "generating",
) -> list[Answer]:
    """Answer every question, with its passages when `hits` is given."""
    prompts = [build_prompt(q, hits[i] if hits is not None else None, prompt) for i, q in enumerate(questions)]
    generations = generator.generate(prompts, progress=progress, desc=desc)
    answers = []
    for i, (question, gen) in enumerate(zip(questions, generations)):
        sources = [source_of(h) for h in hits[i]] if hits is not None else []
        answers.append(
            Answer(
                question,
                gen.text,
                sources,
                gen.seconds + (retrieval_seconds if hits is not None else 0.0),
                gen.truncated,
            )
        )
    return answers


def source_of(hit: Hit) -> dict:
    return {"rank": hit.rank, "chunk_id": hit.chunk.id, "doc_id": hit.chunk.doc_id, "score": round(hit.score, 6)}
