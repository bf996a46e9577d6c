"""Evaluation metrics shared by the stages."""

from align.metrics.text import best_over_references, exact_match, normalize_answer, rouge_l, token_f1

__all__ = ["best_over_references", "exact_match", "normalize_answer", "rouge_l", "token_f1"]
