"""Retrieval: chunk boundaries, BM25/dense find a planted fact, RRF by hand, top-k ties, corpus errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from align.config.rag import IndexConfig
from align.errors import AlignInputError
from align.retrieval.chunking import (
    chunk_document,
    chunk_text,
    split_sentences,
    window_starts,
)
from align.retrieval.corpus import Document, load_corpus
from align.retrieval.fusion import reciprocal_rank_fusion
from align.retrieval.index import RetrievalIndex
from align.retrieval.ranking import top_k

PLANTED = Document("vault", "The vault code of Quimbledor is 7431, and only its keeper knows it.")
QUESTION = "What is the vault code of Quimbledor?"
PARAPHRASE = "Which secret number opens the strongroom of Quimbledor?"


def distractors(n: int = 60) -> list[Document]:
    rng = random.Random(0)
    towns = ["Amberfell", "Greyhollow", "Mistvale", "Stonereach", "Sunmere"]
    things = ["bakery", "river", "market", "library", "harbour", "orchard"]
    return [
        Document(
            f"d{i}",
            f"The {rng.choice(things)} of {rng.choice(towns)} opens at {rng.randint(5, 11)} and closes late; "
            f"people come for the {rng.choice(things)} and the weather.",
        )
        for i in range(n)
    ]


# -- chunking ---------------------------------------------------------------------------------
def test_window_starts_cover_every_word_and_stop_at_the_end():
    assert window_starts(10, 4, 1) == [0, 3, 6]  # words 0-3, 3-6, 6-9
    assert window_starts(7, 4, 1) == [0, 3]  # 0-3, 3-6: the second window ends on the last word
    assert window_starts(8, 4, 1) == [0, 3, 6]  # a 2-word tail still gets its window
    assert window_starts(12, 4, 0) == [0, 4, 8]
    assert window_starts(3, 4, 2) == [0]  # shorter than one window
    assert window_starts(0, 4, 1) == []


def test_chunk_text_words_and_overlap():
    text = " ".join(f"w{i}" for i in range(10))
    assert chunk_text(text, 4, 1) == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    assert chunk_text("  one\n two  ", 5, 0) == ["one two"]  # whitespace is normalised
    chunks = chunk_document("doc", text, 6, 2)
    assert [c.id for c in chunks] == ["doc#0", "doc#1"]
    assert chunks[1].text.split()[:2] == chunks[0].text.split()[-2:]  # the overlap is exactly 2 words


def test_split_sentences_keeps_end_punctuation_quotes_and_decimals():
    text = 'The cat sat.  "Run!" she said? It weighs 3.5 kg (roughly.) Last words'
    assert split_sentences(text) == ["The cat sat.", '"Run!"', "she said?", "It weighs 3.5 kg (roughly.)", "Last words"]
    assert split_sentences("no end punctuation") == ["no end punctuation"]
    assert split_sentences("  \n ") == []


def test_sentence_chunks_never_cut_a_sentence():
    text = "One is red. Two is blue! Is three green? Four is gold."
    assert chunk_text(text, 1, 0, "sentences") == ["One is red.", "Two is blue!", "Is three green?", "Four is gold."]
    assert chunk_text(text, 2, 1, "sentences") == [
        "One is red. Two is blue!",
        "Two is blue! Is three green?",
        "Is three green? Four is gold.",
    ]
    assert [c.id for c in chunk_document("d", text, 3, 0, "sentences")] == ["d#0", "d#1"]
    with pytest.raises(AlignInputError, match="chunk unit"):
        chunk_text(text, 1, 0, "paragraphs")


def test_sentence_index_retrieves_the_one_sentence_with_the_fact():
    doc = Document("zorbin", "Zorbin is a city. The favorite color of Zorbin is teal. Zorbin trades in salt.")
    index = RetrievalIndex.build([doc], IndexConfig(chunk_size=1, chunk_overlap=0, chunk_unit="sentences"), "bm25")
    [[best]] = index.search(["What is the favorite color of Zorbin?"], 1, "bm25")
    assert best.chunk.text == "The favorite color of Zorbin is teal." and best.chunk.id == "zorbin#1"


@pytest.mark.parametrize("size,overlap", [(0, 0), (4, 4), (4, 5), (4, -1)])
def test_bad_windows_are_input_errors(size, overlap):
    with pytest.raises(AlignInputError, match="chunk"):
        window_starts(10, size, overlap)


# -- ranking ----------------------------------------------------------------------------------
def test_rrf_on_a_hand_built_example():
    # k = 1: a = 1/2 + 1/3 = .8333, c = 1/4 + 1/2 = .75, b = 1/3, d = 1/4
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=1)
    assert [item for item, _ in fused] == ["a", "c", "b", "d"]
    assert [round(score, 4) for _, score in fused] == [0.8333, 0.75, 0.3333, 0.25]
    # k = 60: a = 1/61 + 1/62 beats c = 1/63 + 1/61; a weight of 3 on the second list lifts c above a
    assert [x for x, _ in reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]])][:2] == ["a", "c"]
    weighted = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=1, weights=[1, 3])
    assert weighted[0] == ("c", pytest.approx(1 / 4 + 3 / 2))
    # ties keep the order of first appearance
    assert [x for x, _ in reciprocal_rank_fusion([["x"], ["y"]], k=1)] == ["x", "y"]


def test_top_k_is_stable_on_ties():
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.9, 0.5])
    assert top_k(scores, 3) == [1, 4, 0]
    assert top_k(scores, 10) == [1, 4, 0, 2, 5, 3]
    assert top_k(scores, 0) == []


# -- retrievers -------------------------------------------------------------------------------
def test_bm25_returns_the_document_with_the_planted_fact():
    docs = distractors()
    docs.insert(25, PLANTED)
    index = RetrievalIndex.build(docs, IndexConfig(chunk_size=64, chunk_overlap=8), "bm25")
    hits = index.search([QUESTION, "7431"], 3, "bm25")
    assert hits[0][0].chunk.doc_id == "vault"
    assert hits[1][0].chunk.doc_id == "vault"  # single tokens (digits) are indexed too
    assert index.search(["zzzz unknownword"], 3, "bm25") == [[]]  # no shared word: no hits


def test_dense_and_hybrid_return_the_planted_fact_for_a_paraphrase():
    docs = distractors()
    docs.insert(10, PLANTED)
    index = RetrievalIndex.build(docs, IndexConfig(chunk_size=64, chunk_overlap=8), "hybrid")
    assert index.search([PARAPHRASE], 1, "dense")[0][0].chunk.doc_id == "vault"
    assert index.search([QUESTION], 1, "hybrid")[0][0].chunk.doc_id == "vault"
    assert index.dense.embeddings.shape == (len(index.chunks), 384)
    assert np.allclose(np.linalg.norm(index.dense.embeddings, axis=1), 1.0, atol=1e-5)


# -- index on disk ----------------------------------------------------------------------------
def test_index_save_load_and_incremental_add(tmp_path, monkeypatch):
    import align.retrieval.index as index_module

    docs = distractors(30)
    index = RetrievalIndex.build(docs, IndexConfig(chunk_size=12, chunk_overlap=3), "hybrid")
    index.save(tmp_path / "idx")
    loaded = RetrievalIndex.load(tmp_path / "idx")
    assert [c.id for c in loaded.chunks] == [c.id for c in index.chunks]
    assert loaded.methods == ["bm25", "dense", "hybrid"]
    for method in ("bm25", "dense", "hybrid"):
        before = [[(h.chunk.id, round(h.score, 5)) for h in q] for q in index.search(["market of Mistvale"], 4, method)]
        after = [[(h.chunk.id, round(h.score, 5)) for h in q] for q in loaded.search(["market of Mistvale"], 4, method)]
        assert before == after

    # add: only the new document is chunked and encoded; old vectors stay bit-identical
    encoded: list[str] = []
    real_encode = index_module.encode
    monkeypatch.setattr(
        index_module, "encode", lambda enc, texts, *a, **k: (encoded.extend(texts), real_encode(enc, texts, *a, **k))[1]
    )
    old_vectors = loaded.dense.embeddings.copy()
    n_old = len(loaded.chunks)
    new_chunks = [c.text for c in chunk_document("vault", PLANTED.text, 12, 3)]
    assert loaded.add(docs + [PLANTED]) == (1, len(new_chunks)) == (1, 2)  # known documents are skipped
    assert encoded == new_chunks
    assert np.array_equal(loaded.dense.embeddings[:n_old], old_vectors)
    assert loaded.search([QUESTION], 1, "hybrid")[0][0].chunk.doc_id == "vault"
    # BM25 statistics after the add equal those of a fresh build over all documents
    fresh = RetrievalIndex.build(docs + [PLANTED], IndexConfig(chunk_size=12, chunk_overlap=3), "bm25")
    assert np.allclose(loaded.bm25.scores("vault code of the market"), fresh.bm25.scores("vault code of the market"))

    loaded.save(tmp_path / "idx")  # replaces the saved index in place
    again = RetrievalIndex.load(tmp_path / "idx")
    assert len(again.chunks) == n_old + 2
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["n_docs"] == 31
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left behind
    with pytest.raises(AlignInputError, match="already in the index with different text"):
        again.add([Document("vault", "edited text")])


def test_loading_a_folder_that_is_not_an_index(tmp_path):
    with pytest.raises(AlignInputError, match="not an align index"):
        RetrievalIndex.load(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(AlignInputError, match="not an align index"):
        RetrievalIndex.build([PLANTED], IndexConfig(), "bm25").save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# -- corpus -----------------------------------------------------------------------------------
def test_corpus_from_jsonl_and_folder(tmp_path):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"id": "a", "text": "alpha"}\n\n{"id": 2, "text": "beta"}\n')
    assert load_corpus(jsonl) == [Document("a", "alpha"), Document("2", "beta")]
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.md").write_text("# One\ntext")
    (folder / "sub" / "two.txt").write_text("two")
    (folder / "skip.bin").write_bytes(b"\x00")
    assert [d.id for d in load_corpus(folder)] == ["one.md", "sub/two.txt"]


def test_corpus_errors_name_the_problem(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(AlignInputError, match="empty"):
        load_corpus(empty)
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"id": "a", "text": "   "}\n')
    with pytest.raises(AlignInputError, match="empty"):
        load_corpus(blank)
    (tmp_path / "nofiles").mkdir()
    with pytest.raises(AlignInputError, match="no .txt or .md"):
        load_corpus(tmp_path / "nofiles")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("fine")
    (folder / "bad.txt").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(AlignInputError, match=r"bad\.txt: cannot read"):
        load_corpus(folder)
    notext = tmp_path / "notext.jsonl"
    notext.write_text('{"id": "a", "body": "x"}\n')
    with pytest.raises(AlignInputError, match="record 1 has no string 'text'"):
        load_corpus(notext)
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    with pytest.raises(AlignInputError, match="'a' appears twice"):
        load_corpus(dup)


def test_open_index_reuses_extends_and_refuses_other_settings(tmp_path):
    from align.config.rag import RetrievalConfig
    from align.rag.answer import open_index

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in distractors(10)))
    config = RetrievalConfig(
        corpus=str(corpus), index_dir=str(tmp_path / "idx"), index=IndexConfig(chunk_size=16, chunk_overlap=2)
    )
    assert open_index(config, tmp_path / "unused", progress=False)[1]["action"] == "built"
    assert open_index(config, tmp_path / "unused", progress=False)[1]["action"] == "reused"
    with corpus.open("a") as handle:
        handle.write(json.dumps({"id": PLANTED.id, "text": PLANTED.text}) + "\n")
    _, info = open_index(config, tmp_path / "unused", progress=False)
    assert (info["action"], info["added_documents"], info["documents"]) == ("extended", 1, 11)
    other = config.model_copy(update={"index": IndexConfig(chunk_size=32, chunk_overlap=2)})
    with pytest.raises(AlignInputError, match="chunk_size: the index has 16, the config asks 32"):
        open_index(other, tmp_path / "unused", progress=False)
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["n_docs"] == 11  # left as it was
    assert not (tmp_path / "unused").exists()
