"""Split documents into overlapping word windows.

Words (whitespace-separated) rather than model tokens: the index must not depend on which
generator later reads the passages, and word counts are what a user can reason about.
"""

from __future__ import annotations

from dataclasses import dataclass

from align.errors import AlignInputError


@dataclass(frozen=True)
class Chunk:
    """A passage of one document; `id` is '<doc_id>#<n>' so sources stay traceable."""

    id: str
    doc_id: str
    text: str


def check_window(size: int, overlap: int) -> None:
    if size < 1:
        raise AlignInputError(f"chunk size must be at least 1 word, got {size}")
    if not 0 <= overlap < size:
        raise AlignInputError(f"chunk overlap must be >= 0 and smaller than the chunk size ({size}), got {overlap}")


def window_starts(n_words: int, size: int, overlap: int) -> list[int]:
    """Start offsets of windows of `size` words stepping by size - overlap.

    The last window ends exactly at the last word; no window lies wholly inside the one before
    it, so a 10-word text with size 4, overlap 1 gives starts [0, 3, 6] (words 0-3, 3-6, 6-9).
    """
    check_window(size, overlap)
    if n_words == 0:
        return []
    step = size - overlap
    starts = [0]
    while starts[-1] + size < n_words:
        starts.append(starts[-1] + step)
    return starts


def chunk_text(text: str, size: int, overlap: int) -> list[str]:
    """The word windows of one text (an empty text gives no chunks)."""
    words = text.split()
    return [" ".join(words[s : s + size]) for s in window_starts(len(words), size, overlap)]


def chunk_document(doc_id: str, text: str, size: int, overlap: int) -> list[Chunk]:
    return [Chunk(f"{doc_id}#{n}", doc_id, piece) for n, piece in enumerate(chunk_text(text, size, overlap))]
