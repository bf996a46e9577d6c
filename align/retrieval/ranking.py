"""Top-k selection shared by the BM25 and dense retrievers."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the k highest scores, best first; equal scores go to the lower index.

    argpartition finds the candidates in O(n); every score tied with the k-th is kept and the
    candidates are sorted by (score desc, index asc), so results never depend on numpy's
    internal order.
    """
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return []
    if k < n:
        threshold = scores[np.argpartition(-scores, k - 1)[k - 1]]
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(n)
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k].tolist()
