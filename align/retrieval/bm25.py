"""BM25 over chunk texts, through the `bm25s` library.

bm25s precomputes each (term, chunk) score, and those depend on corpus-wide statistics (IDF,
mean length), so adding chunks must re-derive the score matrix. To make that cheap we keep
every chunk's token ids: an addition tokenizes only the new chunks, then re-indexes from ids
(about a second per 100k chunks), never re-reading or re-tokenizing the old ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import bm25s
import numpy as np

# Keep one-character words: lucky numbers, grades and years' digits are often the answer.
TOKEN_PATTERN = r"(?u)\b\w+\b"


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lower-cased word tokens without English stopwords (the same for chunks and queries)."""
    return bm25s.tokenize(
        texts, lower=True, token_pattern=TOKEN_PATTERN, stopwords="en", return_ids=False, show_progress=False
    )


class BM25Index:
    """Token ids per chunk + a vocabulary; the bm25s score matrix is derived from them."""

    def __init__(self, k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        self.vocab: dict[str, int] = {}
        self.token_ids: list[np.ndarray] = []
        self._retriever: bm25s.BM25 | None = None

    def __len__(self) -> int:
        return len(self.token_ids)

    def add(self, texts: list[str]) -> None:
        """Tokenize only the new texts, then refresh the corpus statistics."""
        for tokens in tokenize(texts):
            self.token_ids.append(np.array([self.vocab.setdefault(t, len(self.vocab)) for t in tokens], dtype=np.int32))
        self._retriever = None

    def _fitted(self) -> bm25s.BM25:
        if self._retriever is None:
            retriever = bm25s.BM25(k1=self.k1, b=self.b)
            # bm25s appends an empty token to the vocab it is given: pass a copy.
            retriever.index(([ids.tolist() for ids in self.token_ids], dict(self.vocab)), show_progress=False)
            self._retriever = retriever
        return self._retriever

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for one query, shape (n_chunks,); zeros if no query word is known."""
        ids = [self.vocab[t] for t in tokenize([query])[0] if t in self.vocab]
        if not ids or not self.token_ids:
            return np.zeros(len(self.token_ids), dtype=np.float32)
        return self._fitted().get_scores(ids)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        lengths = np.array([len(ids) for ids in self.token_ids], dtype=np.int64)
        flat = np.concatenate(self.token_ids) if self.token_ids else np.zeros(0, dtype=np.int32)
        np.savez(folder / "tokens.npz", flat=flat, lengths=lengths)
        vocab = sorted(self.vocab, key=self.vocab.__getitem__)
        (folder / "bm25.json").write_text(json.dumps({"k1": self.k1, "b": self.b, "vocab": vocab}))
        if self.token_ids:  # the derived score matrix too, so loading needs no re-indexing
            self._fitted().save(str(folder / "scores"), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> "BM25Index":
        meta = json.loads((folder / "bm25.json").read_text())
        index = cls(k1=meta["k1"], b=meta["b"])
        index.vocab = {token: i for i, token in enumerate(meta["vocab"])}
        data = np.load(folder / "tokens.npz")
        index.token_ids = np.split(data["flat"], np.cumsum(data["lengths"])[:-1]) if len(data["lengths"]) else []
        if (folder / "scores").is_dir():
            index._retriever = bm25s.BM25.load(str(folder / "scores"))
        return index
