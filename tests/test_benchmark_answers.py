"""Answer checking of the generative benchmarks and the figures' standard errors, on hand-made
cases: GSM8K's numeric match (commas, dollars, trailing units and full stops, decimals, the
announced answer vs the last number) and MATH's LaTeX equivalence through Math-Verify."""

from __future__ import annotations

import math

import pytest

from align.benchmarks.answers import announced_number, final_math_answer, gsm8k_scores, last_number, math_correct
from align.benchmarks.stats import mean_stderr, ratio_stderr


@pytest.mark.parametrize(
    ("response", "gold", "flexible", "strict"),
    [
        ("She makes 9 * 2 = $18 every day. So the answer is 18.", "18", 1.0, 1.0),
        ("The total is $1,234.50.", "1234.5", 1.0, 0.0),  # commas, dollar, full stop; 1234.50 == 1234.5
        ("#### 1,000", "1000", 1.0, 1.0),
        ("He ran 5 miles then 7 more, 12 miles in all", "12", 1.0, 0.0),  # trailing unit word
        ("The answer is 18 dollars, not 20.", "18", 0.0, 1.0),  # the last number is 20, the announced one 18
        ("The answer is -3.", "-3", 1.0, 1.0),
        ("3/4 of 8 is 6", "6", 1.0, 0.0),  # a fraction in the working does not hide the result
        ("I cannot tell.", "7", 0.0, 0.0),
        ("The answer is 0.5", "1/2", 0.0, 0.0),  # GSM8K golds are numbers; '1/2' is not one
    ],
)
def test_gsm8k_match(response, gold, flexible, strict):
    assert gsm8k_scores(response, gold) == {"exact_match": flexible, "strict_match": strict}


def test_number_extraction_by_hand():
    assert last_number("from 1,200 to 1,500.") == "1,500."
    assert announced_number("so the answer is: $2,000.") == "2,000"
    assert last_number("no digits") is None


@pytest.mark.parametrize(
    ("response", "gold", "right"),
    [
        ("So $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", True),
        ("The value is \\boxed{0.5}", "\\frac{1}{2}", True),  # value, not text
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("First \\boxed{3} then, correcting, \\boxed{4}", "4", True),  # the last box counts
        ("Final Answer: The final answer is $24$. I hope it is correct.", "24", True),  # Minerva's format
        ("\\boxed{\\frac{2}{3}}", "-\\frac{2}{3}", False),
        ("\\boxed{10\\text{ cm}}", "10", True),  # trailing unit
        ("no answer here", "5", False),
    ],
)
def test_math_equivalence(response, gold, right):
    assert math_correct(response, gold) is right


def test_final_math_answer_handles_nested_braces():
    assert final_math_answer("x = \\boxed{\\frac{a}{b^{2}}} done") == "$\\frac{a}{b^{2}}$"


def test_standard_errors_by_hand():
    mean, stderr = mean_stderr([1.0, 0.0, 1.0, 1.0])  # mean 0.75, sample variance 0.25 -> sqrt(0.25 / 4)
    assert mean == 0.75 and stderr == pytest.approx(0.25)
    assert mean_stderr([0.4]) == (0.4, 0.0)
    # bits 10, 30 over bytes 10, 10: ratio 2; residuals 10-20=-10, 30-20=10 -> sqrt(200/1 / 2) / 10 = 1
    ratio, err = ratio_stderr([10.0, 30.0], [10.0, 10.0])
    assert ratio == 2.0 and err == pytest.approx(1.0)
    assert math.isnan(mean_stderr([])[0])


def test_chat_prompts_put_the_shots_in_earlier_turns():
    from align.benchmarks.run import MATH_INSTRUCTION, generation_messages, generation_text
    from align.benchmarks.tasks import lookup

    shots = [{"question": "1+1?", "solution": "2. So the answer is 2."}]
    turns = generation_messages(lookup("gsm8k"), {"question": "2+2?"}, shots)
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[0]["content"] == "Question: 1+1?" and turns[2]["content"] == "Question: 2+2?"
    assert generation_messages(lookup("math500"), {"question": "x?"}, [])[0]["content"] == f"x?\n{MATH_INSTRUCTION}"
    raw = generation_text(lookup("gsm8k"), {"question": "2+2?"}, shots)
    assert raw == "Question: 1+1?\nAnswer: 2. So the answer is 2.\n\nQuestion: 2+2?\nAnswer:"
