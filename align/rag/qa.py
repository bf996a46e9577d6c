"""QA sets for evaluation: {"question", "answer" | "answers": [...], "doc_id"? | "doc_ids"?}.

A row without an answer cannot be scored, so it is an error naming the file and record rather
than a silent zero in the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from align.data.io import read_records
from align.errors import AlignInputError


@dataclass(frozen=True)
class QAItem:
    question: str
    answers: tuple[str, ...]
    doc_ids: tuple[str, ...] = ()  # documents that hold the answer, when the set labels them


def load_qa(path: str | Path, limit: int | None = None) -> list[QAItem]:
    """Every row of a QA file (the first `limit`), validated."""
    if not Path(path).expanduser().exists():
        raise AlignInputError(f"QA file not found: {path}")
    records = read_records(path)
    items = [_item(record, number, path) for number, record in enumerate(records, start=1)]
    return items[:limit] if limit else items


def _item(record: dict, number: int, path: str | Path) -> QAItem:
    where = f"{path}: record {number}"
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise AlignInputError(f"{where} has no 'question' text (it has {', '.join(sorted(record)) or 'no keys'})")
    answers = record.get("answers", record.get("answer"))
    if isinstance(answers, (str, int, float)) and not isinstance(answers, bool):
        answers = [answers]
    if not isinstance(answers, list) or not answers or any(str(a).strip() == "" for a in answers):
        raise AlignInputError(
            f'{where} has no answer: give "answer": "..." or a non-empty list "answers": [...] (question: {question[:80]!r})'
        )
    doc_ids = record.get("doc_ids", record.get("doc_id", []))
    doc_ids = [doc_ids] if isinstance(doc_ids, (str, int)) else list(doc_ids or [])
    return QAItem(question.strip(), tuple(str(a) for a in answers), tuple(str(d) for d in doc_ids))
