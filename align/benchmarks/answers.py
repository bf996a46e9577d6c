"""Is a generated answer right? GSM8K's numeric match and MATH's LaTeX equivalence (pure functions).

GSM8K follows lm-evaluation-harness: "flexible" takes the last number in the response, "strict"
only a number announced as the answer ("The answer is 18", "#### 18"); commas, a dollar sign and
a trailing full stop are ignored, and numbers compare by value (18 == 18.00). MATH compares the
last \\boxed{} answer (or "The final answer is ...") with the reference through Math-Verify, the
checker TRL and open-r1 use, which parses LaTeX and compares values (\\frac{1}{2} == 0.5).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_NUMBER = re.compile(r"-?[$0-9.,]{2,}|-?[0-9]+")
_ANNOUNCED = re.compile(r"(?:answer is|####)\s*:?\s*\$?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)", re.I)


def to_number(text: str) -> Decimal | None:
    """'$1,234.50.' -> Decimal('1234.50'); None when it is not a number."""
    cleaned = text.replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


def last_number(response: str) -> str | None:
    """The last number-looking span (lm-eval's flexible-extract pattern)."""
    found = [m.group(0) for m in _NUMBER.finditer(response) if to_number(m.group(0)) is not None]
    return found[-1] if found else None


def announced_number(response: str) -> str | None:
    """The first number introduced as the answer ('The answer is 18.', '#### 18')."""
    match = _ANNOUNCED.search(response)
    return match.group(1) if match else None


def numbers_equal(predicted: str | None, gold: str) -> bool:
    if predicted is None:
        return False
    a, b = to_number(predicted), to_number(gold)
    return a is not None and b is not None and a == b


def gsm8k_scores(response: str, gold: str) -> dict[str, float]:
    return {
        "exact_match": float(numbers_equal(last_number(response), gold)),
        "strict_match": float(numbers_equal(announced_number(response), gold)),
    }


def final_math_answer(response: str) -> str:
    """The text Math-Verify should read: the last \\boxed{...}, else Minerva's 'final answer is X',
    else the whole response."""
    start = response.rfind("\\boxed")
    if start >= 0:
        brace = response.find("{", start)
        depth = 0
        for i in range(brace, len(response)) if brace >= 0 else ():
            depth += {"{": 1, "}": -1}.get(response[i], 0)
            if depth == 0:
                return "$" + response[brace + 1 : i] + "$"
    match = re.search(r"final answer is\s*(.*?)(?:\.\s*I hope it is correct|\n|$)", response, re.I | re.S)
    return match.group(1).strip() if match else response


def math_gold(answer: str, solution: str | None = None) -> str:
    """The answer to compare with: GSM8K's "#### N" read as N; for MATH the last \\boxed{} of the
    solution when it has one (the answer MATH-500 publishes: the stored answers went through
    Minerva's normaliser, whose unit list turns "\\left(" into "\\le(" in 4 of MATH-500's 500),
    else the answer as given."""
    if "####" in answer:
        return answer.rsplit("####", 1)[1].strip()
    if solution and "\\boxed" in solution:
        boxed = final_math_answer(solution)
        if boxed.startswith("$"):
            return boxed[1:-1]
    return answer


SYMPY_SECONDS = 30
"""Math-Verify's limit on one parse or comparison (its default, 5 s, can cut a right answer short
on a loaded machine; a sympy expression that never simplifies still stops)."""


def math_correct(response: str, gold: str) -> bool:
    from math_verify import parse, verify

    predicted = parse(final_math_answer(response), parsing_timeout=SYMPY_SECONDS)
    reference = parse("$" + gold + "$", parsing_timeout=SYMPY_SECONDS) or parse(gold, parsing_timeout=SYMPY_SECONDS)
    return bool(predicted) and bool(reference) and bool(verify(reference, predicted, timeout_seconds=SYMPY_SECONDS))
