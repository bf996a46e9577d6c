"""Verifiable rewards: rules that check a completion against the record, no model involved
(RLVR). Each takes one completion and returns a float, or None when the record gives it nothing
to check (no reference): that source then says nothing about the sample.

    exact_answer     1 if the whole completion equals the reference after normalisation, else 0
    contains_answer  1 if the normalised reference appears in the completion as whole words, else 0
    last_number      1 if the completion's last number equals the reference's number, else 0
    regex            1 if the pattern matches somewhere in the completion (re.search), else 0
    length           1 - |words - target| / target, floored at 0: 1 at the target length

Normalisation (`normalize_answer`): lower case, thousands separators and a trailing ".0" dropped
from numbers, punctuation to spaces (a decimal point inside a number kept), whitespace
collapsed; so "The answer: 1,024." and "the answer 1024" compare equal.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")
_PUNCT = re.compile(r"[^\w\s.]|(?<!\d)\.|\.(?!\d)")


def canonical_number(text: str) -> str:
    """'1,024' -> '1024', '+3.50' -> '3.5', '7.0' -> '7', '-0' -> '0'."""
    value = text.replace(",", "").lstrip("+")
    if "." in value:
        value = value.rstrip("0").rstrip(".") or "0"
    if value in ("-0", "-", ""):
        value = "0"
    if value.startswith("-."):
        value = "-0" + value[1:]
    elif value.startswith("."):
        value = "0" + value
    return value


def normalize_answer(text: str) -> str:
    text = _NUMBER.sub(lambda m: " " + canonical_number(m.group()) + " ", text.lower())
    return " ".join(_PUNCT.sub(" ", text).split())


def exact_answer(completion: str, reference: str | None) -> float | None:
    if reference is None:
        return None
    return float(normalize_answer(completion) == normalize_answer(str(reference)))


def contains_answer(completion: str, reference: str | None) -> float | None:
    if reference is None:
        return None
    wanted = normalize_answer(str(reference))
    return float(bool(wanted) and f" {wanted} " in f" {normalize_answer(completion)} ")


def last_number(completion: str, reference: str | None) -> float | None:
    if reference is None:
        return None
    expected = _NUMBER.findall(str(reference))
    if not expected:
        return None  # a reference without a number: nothing to check with this rule
    found = _NUMBER.findall(completion)
    return float(bool(found) and canonical_number(found[-1]) == canonical_number(expected[-1]))


def regex_match(completion: str, pattern: str) -> float:
    return float(re.search(pattern, completion) is not None)


def length_score(completion: str, target: int) -> float:
    return max(0.0, 1.0 - abs(len(completion.split()) - target) / target)


ANSWER_RULES: dict[str, Callable[[str, str | None], float | None]] = {
    "exact_answer": exact_answer,
    "contains_answer": contains_answer,
    "last_number": last_number,
}
RULES = (*ANSWER_RULES, "regex", "length")
