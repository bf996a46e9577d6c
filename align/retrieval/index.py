"""A retrieval index on disk: chunks + BM25 token ids + dense embeddings, with incremental add.

Layout of an index folder:
    index.json     format version, chunking and model settings, which retrievers it holds
    docs.json      document id -> sha1 of its text (to skip re-adds and refuse silent edits)
    chunks.jsonl   one {id, doc_id, text} per chunk, in index order
    bm25/          token ids per chunk + vocabulary (bm25.py)
    dense/         embeddings.npy, one unit row per chunk (dense.py)
Saving writes a temp folder and renames it into place, so a crash never leaves half an index.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from align.config.rag import IndexConfig
from align.errors import AlignInputError
from align.retrieval.bm25 import BM25Index
from align.retrieval.chunking import Chunk, check_window, chunk_document
from align.retrieval.corpus import Document
from align.retrieval.dense import DenseIndex, encode, load_encoder
from align.retrieval.fusion import reciprocal_rank_fusion
from align.retrieval.ranking import top_k
from align.rundir import write_folder_atomically

FORMAT_VERSION = 1
METHODS = ("bm25", "dense", "hybrid")


def changed_settings(saved: IndexConfig, requested: IndexConfig) -> list[str]:
    """Settings that differ in a way that changes the stored chunks or vectors."""
    keys = ("chunk_size", "chunk_overlap", "dense_model", "bm25_k1", "bm25_b")
    return [
        f"{k}: the index has {getattr(saved, k)!r}, the config asks {getattr(requested, k)!r}"
        for k in keys
        if getattr(saved, k) != getattr(requested, k)
    ]


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float
    rank: int  # 1 = best


def components_for(method: str) -> tuple[str, ...]:
    if method not in METHODS:
        raise AlignInputError(f"retriever must be one of {', '.join(METHODS)}, not {method!r}")
    return ("bm25", "dense") if method == "hybrid" else (method,)


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class RetrievalIndex:
    """Chunks of a document collection and the retrievers over them."""

    def __init__(self, settings: IndexConfig):
        check_window(settings.chunk_size, settings.chunk_overlap)
        self.settings = settings
        self.chunks: list[Chunk] = []
        self.doc_hashes: dict[str, str] = {}
        self.bm25: BM25Index | None = None
        self.dense: DenseIndex | None = None

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def build(
        cls, docs: list[Document], settings: IndexConfig, method: str = "bm25", progress: bool = False
    ) -> RetrievalIndex:
        index = cls(settings)
        for component in components_for(method):
            index.ensure(component)
        index.add(docs, progress=progress)
        return index

    def ensure(self, method: str, progress: bool = False) -> None:
        """Make sure the retrievers `method` needs exist, computing them from the stored chunks."""
        texts = [c.text for c in self.chunks]
        if "bm25" in components_for(method) and self.bm25 is None:
            self.bm25 = BM25Index(self.settings.bm25_k1, self.settings.bm25_b)
            self.bm25.add(texts)
        if "dense" in components_for(method) and self.dense is None:
            self.dense = DenseIndex(self.settings.dense_model)
            self.dense.add(self._encode(texts, progress))

    def add(self, docs: list[Document], progress: bool = False) -> tuple[int, int]:
        """Index documents not indexed yet; returns (new documents, new chunks).

        A document already present with the same text is skipped; with different text it is an
        error (editing in place would leave stale chunks; rebuild the index instead).
        """
        new_docs = []
        for doc in docs:
            known = self.doc_hashes.get(doc.id)
            if known is None:
                new_docs.append(doc)
            elif known != _sha1(doc.text):
                raise AlignInputError(
                    f"document '{doc.id}' is already in the index with different text; incremental add only adds new "
                    "documents: rebuild the index (a new --out folder) to pick up edits"
                )
        new_chunks = [
            c
            for d in new_docs
            for c in chunk_document(
                d.id, d.text, self.settings.chunk_size, self.settings.chunk_overlap, self.settings.chunk_unit
            )
        ]
        texts = [c.text for c in new_chunks]
        if self.bm25 is not None:
            self.bm25.add(texts)
        if self.dense is not None:
            self.dense.add(self._encode(texts, progress))
        self.chunks.extend(new_chunks)
        self.doc_hashes.update({d.id: _sha1(d.text) for d in new_docs})
        return len(new_docs), len(new_chunks)

    def _encode(self, texts: list[str], progress: bool = False):
        encoder = load_encoder(self.settings.dense_model)
        return encode(encoder, texts, self.settings.encode_batch_size, progress=progress and len(texts) > 256)

    @property
    def methods(self) -> list[str]:
        built = [m for m in ("bm25", "dense") if getattr(self, m) is not None]
        return built + (["hybrid"] if len(built) == 2 else [])

    # -- searching ----------------------------------------------------------------------------
    def search(self, queries: list[str], k: int, method: str = "bm25") -> list[list[Hit]]:
        """The k best chunks per query, best first."""
        self.ensure(method)
        if not self.chunks:
            return [[] for _ in queries]
        if method == "bm25":
            return [self._hits(*self._bm25_top(q, k)) for q in queries]
        dense_scores = self.dense.scores(self._encode(queries))
        if method == "dense":
            return [self._hits(top_k(s, k), s) for s in dense_scores]
        depth = max(4 * k, 20)  # fuse deeper lists than we return, as RRF is meant to
        results = []
        for query, dense_row in zip(queries, dense_scores):
            fused = reciprocal_rank_fusion(
                [self._bm25_top(query, depth)[0], top_k(dense_row, depth)], k=self.settings.rrf_k
            )[:k]
            results.append([Hit(self.chunks[i], float(score), rank) for rank, (i, score) in enumerate(fused, start=1)])
        return results

    def _bm25_top(self, query: str, k: int):
        """BM25's best k and all scores; chunks sharing no word with the query (score 0) are left out."""
        scores = self.bm25.scores(query)
        return [i for i in top_k(scores, k) if scores[i] > 0], scores

    def _hits(self, order: list[int], scores) -> list[Hit]:
        return [Hit(self.chunks[i], float(scores[i]), rank) for rank, i in enumerate(order, start=1)]

    # -- disk ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write to a temp folder, then swap it in; an existing index is replaced only once complete."""
        path = Path(path)
        if path.exists() and any(path.iterdir()) and not (path / "index.json").is_file():
            raise AlignInputError(
                f"{path} exists and is not an align index; choose an empty or new folder for the index"
            )
        meta = {
            "format": FORMAT_VERSION,
            "settings": self.settings.model_dump(),
            "methods": self.methods,
            "n_docs": len(self.doc_hashes),
            "n_chunks": len(self.chunks),
        }

        def write(tmp: Path) -> None:
            (tmp / "docs.json").write_text(json.dumps(self.doc_hashes))
            with (tmp / "chunks.jsonl").open("w", encoding="utf-8") as handle:
                for chunk in self.chunks:
                    handle.write(json.dumps(asdict(chunk), ensure_ascii=False) + "\n")
            if self.bm25 is not None:
                self.bm25.save(tmp / "bm25")
            if self.dense is not None:
                self.dense.save(tmp / "dense")
            (tmp / "index.json").write_text(json.dumps(meta, indent=2))  # last: marks the folder complete

        write_folder_atomically(path, write)
        return path

    @classmethod
    def load(cls, path: str | Path) -> RetrievalIndex:
        path = Path(path)
        meta_file = path / "index.json"
        if not meta_file.is_file():
            raise AlignInputError(
                f"{path} is not an align index (no index.json); build one with `align rag index --corpus DOCS --out {path}`"
            )
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise AlignInputError(
                f"{path}: index format {meta.get('format')} is not supported (expected {FORMAT_VERSION}); rebuild it"
            )
        index = cls(IndexConfig(**meta["settings"]))
        index.doc_hashes = json.loads((path / "docs.json").read_text())
        with (path / "chunks.jsonl").open(encoding="utf-8") as handle:
            index.chunks = [Chunk(**json.loads(line)) for line in handle if line.strip()]
        if (path / "bm25").is_dir():
            index.bm25 = BM25Index.load(path / "bm25")
        if (path / "dense").is_dir():
            index.dense = DenseIndex.load(path / "dense")
        return index
