"""align.metrics.text and the RAG scoring on cases worked out by hand."""

from __future__ import annotations

import pytest

from align.metrics.text import best_over_references, contains_answer, exact_match, normalize_answer, rouge_l, token_f1
from align.rag.qa import QAItem
from align.rag.scoring import answer_scores, mean_scores, retrieval_scores
from align.retrieval.chunking import Chunk
from align.retrieval.index import Hit


def test_normalisation_follows_squad():
    assert normalize_answer("The  Blue, Whale!") == "blue whale"
    assert normalize_answer("An apple a day") == "apple day"


def test_exact_match():
    assert exact_match("The blue.", "blue") == 1.0
    assert exact_match("blue whale", "blue") == 0.0
    assert exact_match("", "") == 1.0


def test_token_f1_by_hand():
    # pred [blue, and, red] vs ref [blue]: common 1, P = 1/3, R = 1, F1 = 2 * (1/3) / (4/3) = 0.5
    assert token_f1("blue and red", "blue") == pytest.approx(0.5)
    # pred [cat, sat, on, mat] vs ref [cat, sat, mat, big]: common 3, P = R = 3/4, F1 = 0.75
    assert token_f1("the cat sat on the mat", "cat sat mat big") == pytest.approx(0.75)
    # repeated tokens count once per occurrence: pred [a1, a1] vs ref [a1]: P = 1/2, R = 1, F1 = 2/3
    assert token_f1("x x", "x") == pytest.approx(2 / 3)
    assert token_f1("green", "blue") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("blue", "") == 0.0


def test_rouge_l_by_hand():
    # LCS("police kill the gunman", "police killed the gunman") = police the gunman = 3: P = R = 3/4
    assert rouge_l("police kill the gunman", "police killed the gunman") == pytest.approx(0.75)
    # LCS = "the gunman" = 2 of 4 tokens each: F = 0.5
    assert rouge_l("the gunman kill police", "police killed the gunman") == pytest.approx(0.5)
    # LCS = 2, P = 2/2, R = 2/4: F = 2 * 1 * 0.5 / 1.5 = 2/3
    assert rouge_l("the gunman", "police killed the gunman") == pytest.approx(2 / 3)


def test_best_over_references_and_contains():
    assert best_over_references(token_f1, "blue and red", ["green", "red"]) == pytest.approx(0.5)
    assert best_over_references(exact_match, "x", []) == 0.0
    assert contains_answer("Sure! The favorite color of Zorbin is blue.", "blue") == 1.0
    assert contains_answer("bluebell", "blue") == 0.0  # whole words only
    assert contains_answer("It is 17.", "7") == 0.0
    scores = answer_scores("Sure! It is blue.", ["blue", "navy"])
    assert scores["exact_match"] == 0.0 and scores["contains"] == 1.0
    assert scores["token_f1"] == pytest.approx(2 * (1 / 4) * 1 / (1 / 4 + 1))  # pred [sure, it, is, blue]


def hit(doc_id: str, rank: int, text: str = "") -> Hit:
    return Hit(Chunk(f"{doc_id}#0", doc_id, text), 1.0 / rank, rank)


def test_recall_and_mrr_by_hand():
    hits = [hit("x", 1, "nothing"), hit("zorbin", 2, "Zorbin likes blue"), hit("y", 3, "blue sky")]
    labelled = QAItem("What color does Zorbin like?", ("blue",), ("zorbin", "kelbo"))
    # labels: one of the two labelled docs retrieved -> recall 1/2; first relevant at rank 2 -> MRR 1/2
    assert retrieval_scores(hits, labelled, "labels") == {"recall_at_k": 0.5, "mrr": 0.5}
    # answer: ranks 2 and 3 contain "blue" -> hit, MRR 1/2
    assert retrieval_scores(hits, labelled, "answer") == {"recall_at_k": 1.0, "mrr": 0.5}
    # the doc id "zorbin" occurs in the question at rank 2
    assert retrieval_scores(hits, labelled, "doc_id_in_question") == {"recall_at_k": 1.0, "mrr": 0.5}
    assert retrieval_scores(hits[:1], labelled, "answer") == {"recall_at_k": 0.0, "mrr": 0.0}
    assert mean_scores([{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 0.5}]) == {"a": 0.5, "b": 0.25}
