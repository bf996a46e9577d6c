"""Verifiable rewards: rules that check a completion against the record, no model involved
(RLVR). Each takes one completion and returns a float, or None when the record gives it nothing
to check (no reference): that source then says nothing about the sample.

    exact_answer     1 if the whole completion equals the reference after normalisation, else 0
    contains_answer  1 if the normalised reference appears in the completion as whole words, else 0
    last_number      1 if the completion's last number equals the reference's number, else 0
    regex            1 if the pattern matches somewhere in the completion (re.search), else 0
    length           1 - |words - target| / target, floored at 0: 1 at the target length

Normalisation (`normalize_answer`): lower case, thousands separators ("1,024", never "1,2,3")
and a trailing ".0" dropped from numbers, a number's sign kept ("-3" is not "3"), other
punctuation to spaces (a decimal point inside a number kept), whitespace collapsed; so
"The answer: 1,024." and "the answer 1024" compare equal. A reference may be a list of accepted
answers (the best match counts); an empty reference, like a missing one, gives None.

Rules for public tasks (the benchmarks' own checkers, one home: align.benchmarks):
    ifeval       the share of the record's verifiable instructions (`instruction_id_list`,
                 `kwargs`, as IFEval's rows) the completion follows, strict or loose reading
    math_answer  1 if the completion's final answer equals the record's: a number (GSM8K,
                 "#### N" accepted) compared as a number, the last one in the completion or its
                 last \\boxed{}; anything else (MATH) through Math-Verify against the last
                 \\boxed{} of the record's solution when it has one
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|[-+]?\.\d+")
# punctuation, but not a decimal point inside a number nor a minus sign that starts one
_PUNCT = re.compile(r"[^\w\s.\-]|(?<!\d)\.|\.(?!\d)|-(?!\d)|(?<=\S)-")


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


Reference = str | int | float | list | tuple | None


def accepted_answers(reference: Reference) -> list[str]:
    """The non-empty answers a reference accepts: one value, or each of a list."""
    values = reference if isinstance(reference, (list, tuple)) else [reference]
    return [str(v) for v in values if v is not None and str(v).strip()]


def _best(check: Callable[[str, str], float | None], completion: str, reference: Reference) -> float | None:
    scores = [score for answer in accepted_answers(reference) if (score := check(completion, answer)) is not None]
    return max(scores) if scores else None


def _exact(completion: str, answer: str) -> float:
    return float(normalize_answer(completion) == normalize_answer(answer))


def _contains(completion: str, answer: str) -> float:
    wanted = normalize_answer(answer)
    return float(bool(wanted) and f" {wanted} " in f" {normalize_answer(completion)} ")


def _last_number(completion: str, answer: str) -> float | None:
    expected = _NUMBER.findall(answer)
    if not expected:
        return None  # a reference without a number: nothing to check with this rule
    found = _NUMBER.findall(completion)
    return float(bool(found) and canonical_number(found[-1]) == canonical_number(expected[-1]))


def exact_answer(completion: str, reference: Reference) -> float | None:
    return _best(_exact, completion, reference)


def contains_answer(completion: str, reference: Reference) -> float | None:
    return _best(_contains, completion, reference)


def last_number(completion: str, reference: Reference) -> float | None:
    return _best(_last_number, completion, reference)


def math_answer(completion: str, reference: Reference, solution: str | None = None) -> float | None:
    """1.0 when the completion's final answer is the reference (see the module docstring)."""
    from align.benchmarks import answers

    accepted = accepted_answers(reference)
    if not accepted:
        return None
    gold = answers.math_gold(accepted[0], solution)
    if answers.to_number(gold) is not None:
        final = answers.final_math_answer(completion)
        said = final.strip("$") if final is not completion else answers.last_number(completion)
        if answers.numbers_equal(said, gold) or answers.numbers_equal(answers.last_number(said or ""), gold):
            return 1.0
        if final is completion:  # no \\boxed{} or "final answer is": the last number was the answer
            return 0.0
    return float(answers.math_correct(completion, gold))


def math_answer_found(completion: str) -> bool:
    """Whether math_answer can read a final answer at all: a \\boxed{}, "final answer is ...", or a
    number (a completion without one is scored wrong and counted as unparsed)."""
    from align.benchmarks import answers

    return answers.final_math_answer(completion) is not completion or answers.last_number(completion) is not None


def ifeval_share(completion: str, record: dict, reading: str = "strict") -> float:
    """The share of the record's instructions the completion follows (IFEval's checker)."""
    from align.benchmarks import ifeval

    followed = ifeval.check(record, completion)[reading]
    return sum(followed) / len(followed)


def regex_match(completion: str, pattern: str) -> float:
    return float(re.search(pattern, completion) is not None)


def length_score(completion: str, target: int) -> float:
    return max(0.0, 1.0 - abs(len(completion.split()) - target) / target)


ANSWER_RULES: dict[str, Callable[[str, str | None], float | None]] = {
    "exact_answer": exact_answer,
    "contains_answer": contains_answer,
    "last_number": last_number,
}
RULES = (*ANSWER_RULES, "math_answer", "ifeval", "regex", "length")
