"""Split documents into overlapping windows of words or of whole sentences.

Words (whitespace-separated) rather than model tokens: the index must not depend on which
generator later reads the passages, and word counts are what a user can reason about.
Sentence windows keep every fact whole: a small generator reads a passage of one or two
sentences far more reliably than a long one (measured on the demo world, README `align rag`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

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


ChunkUnit = Literal["words", "sentences"]

# A sentence ends at . ! or ? (and any closing quotes or brackets) followed by whitespace.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a text, whitespace normalised; a text without end punctuation is one sentence."""
    return [" ".join(s.split()) for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def units_of(text: str, unit: ChunkUnit) -> list[str]:
    if unit == "words":
        return text.split()
    if unit == "sentences":
        return split_sentences(text)
    raise AlignInputError(f"chunk unit must be 'words' or 'sentences', not {unit!r}")


def chunk_text(text: str, size: int, overlap: int, unit: ChunkUnit = "words") -> list[str]:
    """Windows of `size` words (or sentences) of one text; an empty text gives no chunks."""
    units = units_of(text, unit)
    return [" ".join(units[s : s + size]) for s in window_starts(len(units), size, overlap)]


def chunk_document(doc_id: str, text: str, size: int, overlap: int, unit: ChunkUnit = "words") -> list[Chunk]:
    return [Chunk(f"{doc_id}#{n}", doc_id, piece) for n, piece in enumerate(chunk_text(text, size, overlap, unit))]
