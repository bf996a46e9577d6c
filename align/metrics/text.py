"""Answer-quality metrics: exact match, token F1 (SQuAD-style normalisation), ROUGE-L.

Normalisation (lower case, strip punctuation and articles, squeeze spaces) follows the
SQuAD evaluation script so figures are comparable with published QA numbers.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from functools import lru_cache
from typing import Callable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def contains_answer(prediction: str, reference: str) -> float:
    """1 when the normalised reference occurs in the normalised prediction as whole words.

    Answer accuracy for verbose outputs ("Of course! The capital is Mistvale."), where exact
    match is 0 although the answer is right.
    """
    ref, pred = normalize_answer(reference), normalize_answer(prediction)
    return float(bool(ref) and f" {ref} " in f" {pred} ")


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (longest common subsequence), via the `rouge-score` package."""
    return _rouge_scorer().score(reference, prediction)["rougeL"].fmeasure


# The answer metrics every evaluation reports, by the name they carry in eval.json.
ANSWER_METRICS: dict[str, Callable[[str, str], float]] = {
    "exact_match": exact_match,
    "token_f1": token_f1,
    "rouge_l": rouge_l,
    "contains": contains_answer,
}


def best_over_references(metric: Callable[[str, str], float], prediction: str, references: Sequence[str]) -> float:
    """A prediction is as good as its best match among several accepted answers."""
    return max((metric(prediction, ref) for ref in references), default=0.0)
