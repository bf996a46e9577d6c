"""Load a document collection: JSONL/JSON/CSV/Parquet records {id, text}, or a folder of .txt/.md files.

Every problem names the file (and line or record) and the fix: an empty corpus, a file that
cannot be read or decoded, a record without text, two documents with the same id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from align.data.io import SUFFIXES, read_records
from align.errors import AlignInputError

TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Document:
    id: str
    text: str


def load_corpus(source: str | Path) -> list[Document]:
    """All documents of a records file or a folder of text files, in a stable order."""
    path = Path(source).expanduser()
    if not path.exists():
        raise AlignInputError(
            f"corpus not found: {source} (give a .jsonl of {{id, text}} or a folder of .txt/.md files)"
        )
    if path.is_dir():
        docs = _read_folder(path)
    elif path.suffix.lower() in TEXT_SUFFIXES:
        docs = [_read_text_file(path, path.parent)]
    elif path.suffix.lower() in SUFFIXES:
        docs = _read_records_file(path)
    else:
        raise AlignInputError(
            f"{path}: unsupported corpus file type '{path.suffix}'; use .jsonl/.json/.csv/.parquet or a folder of .txt/.md"
        )
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise AlignInputError(
            f"corpus {source} is empty: no document has any text; add documents or point to another corpus"
        )
    _check_unique(docs, source)
    return docs


def _read_folder(folder: Path) -> list[Document]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise AlignInputError(f"corpus folder {folder} is empty: it holds no .txt or .md files")
    return [_read_text_file(f, folder) for f in files]


def _read_text_file(path: Path, root: Path) -> Document:
    """One document per file; its id is the path relative to the corpus folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AlignInputError(
            f"{path}: cannot read corpus file: not UTF-8 text (byte {exc.start}); convert it or remove it"
        ) from None
    except OSError as exc:
        raise AlignInputError(
            f"{path}: cannot read corpus file: {exc.strerror or exc}; fix its permissions or remove it"
        ) from None
    return Document(str(path.relative_to(root)), text)


def _read_records_file(path: Path) -> list[Document]:
    try:
        if path.stat().st_size == 0:
            raise AlignInputError(f'corpus {path} is empty (0 bytes); add {{"id", "text"}} records')
        records = read_records(path)
    except OSError as exc:
        raise AlignInputError(f"{path}: cannot read corpus file: {exc.strerror or exc}; fix its permissions") from None
    except UnicodeDecodeError as exc:
        raise AlignInputError(f"{path}: cannot read corpus file: not UTF-8 text (byte {exc.start})") from None
    docs = []
    for number, record in enumerate(records, start=1):
        text = record.get("text")
        if not isinstance(text, str):
            raise AlignInputError(
                f"{path}: record {number} has no string 'text' field (it has {', '.join(sorted(record)) or 'none'}); "
                'corpus records look like {"id": "doc-1", "text": "..."}'
            )
        doc_id = record.get("id")
        docs.append(Document(str(doc_id) if doc_id is not None else f"{path.stem}-{number}", text))
    return docs


def _check_unique(docs: list[Document], source: str | Path) -> None:
    seen: set[str] = set()
    for doc in docs:
        if doc.id in seen:
            raise AlignInputError(f"corpus {source}: document id '{doc.id}' appears twice; ids must be unique")
        seen.add(doc.id)
