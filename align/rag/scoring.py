"""Scores of one answer and one retrieval, and their means over a QA set.

Answer metrics take the best match over the accepted answers (SQuAD convention):
    exact_match, token_f1, rouge_l   from align.metrics.text
    contains                         the answer occurs in the output as whole words (a chatty
                                     "Sure! It is blue." has EM 0 yet is right)
Retrieval metrics, for systems that retrieve (k = number of passages retrieved):
    recall@k   labelled sets: share of the labelled documents among the top k;
               otherwise 1 if any of the top k is relevant (top-k accuracy, as in DPR)
    MRR        1 / rank of the first relevant passage, 0 if none is retrieved
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from align.metrics.text import ANSWER_METRICS, best_over_references, normalize_answer
from align.rag.qa import QAItem
from align.retrieval.index import Hit


def answer_scores(prediction: str, answers: Sequence[str]) -> dict[str, float]:
    return {name: best_over_references(fn, prediction, answers) for name, fn in ANSWER_METRICS.items()}


def resolve_relevance(mode: str, items: Sequence[QAItem]) -> str:
    """'auto' -> 'labels' when every row names its documents, else 'answer'."""
    if mode != "auto":
        return mode
    return "labels" if items and all(item.doc_ids for item in items) else "answer"


def is_relevant(hit: Hit, item: QAItem, mode: str) -> bool:
    if mode == "labels":
        return hit.chunk.doc_id in item.doc_ids
    if mode == "answer":
        text = f" {normalize_answer(hit.chunk.text)} "
        return any(f" {normalize_answer(a)} " in text for a in item.answers if normalize_answer(a))
    if mode == "doc_id_in_question":
        return re.search(rf"\b{re.escape(hit.chunk.doc_id.lower())}\b", item.question.lower()) is not None
    raise ValueError(f"unknown relevance mode {mode!r}")


def retrieval_scores(hits: Sequence[Hit], item: QAItem, mode: str) -> dict[str, float]:
    flags = [is_relevant(h, item, mode) for h in hits]
    first = next((rank for rank, flag in enumerate(flags, start=1) if flag), None)
    if mode == "labels":
        found = {h.chunk.doc_id for h, flag in zip(hits, flags) if flag}
        recall = len(found) / len(set(item.doc_ids))
    else:
        recall = float(first is not None)
    return {"recall_at_k": recall, "mrr": 1.0 / first if first else 0.0}


def mean_scores(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    """Per-key mean over rows (keys of the first row)."""
    rows = list(rows)
    if not rows:
        return {}
    return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}


def system_figures(items: Sequence[QAItem], answers: Sequence) -> dict[str, float]:
    """Mean answer metrics of one system on one QA set, with length, latency and truncation counts.

    `answers` are align.rag.answer.Answer objects (text in .answer, .seconds, .truncated).
    """
    n = max(len(answers), 1)
    figures = mean_scores(answer_scores(a.answer, i.answers) for a, i in zip(answers, items))
    figures["n"] = len(items)
    figures["mean_answer_words"] = sum(len(a.answer.split()) for a in answers) / n
    figures["latency_s"] = sum(a.seconds for a in answers) / n
    figures["truncated"] = sum(bool(a.truncated) for a in answers)
    return figures
