"""Reward rules for public tasks and the answer rules' edge cases, by hand: signs, thousands,
lists of accepted answers, empty references; math_answer on GSM8K and MATH answers; ifeval's
share of instructions followed; prompt rows refused before training when a rule cannot read them."""

from __future__ import annotations

import pytest

from align.config import validate
from align.config.ppo import RewardSource
from align.errors import AlignInputError
from align.rl import rules


def test_a_minus_sign_is_part_of_the_number():
    assert rules.exact_answer("-3", "3") == 0.0 and rules.exact_answer("-3", "-3") == 1.0
    assert rules.contains_answer("The answer is -24.", "24") == 0.0
    assert rules.contains_answer("The answer is -24.", "-24") == 1.0
    assert rules.last_number("so it is -24", "24") == 0.0 and rules.last_number("so it is -24", "-24") == 1.0
    assert rules.normalize_answer("a well-known x-ray") == "a well known x ray"  # hyphens in words: spaces


def test_only_groups_of_three_digits_are_thousands():
    assert rules.normalize_answer("1,2,3") == "1 2 3"
    assert rules.last_number("the list 1,2,3", "3") == 1.0
    assert rules.normalize_answer("1,024 and 12,345,678") == "1024 and 12345678"
    assert rules.normalize_answer("1,0245") == "1 0245"


def test_empty_references_say_nothing_and_lists_accept_any_answer():
    assert rules.exact_answer("", "") is None and rules.contains_answer("x", "  ") is None
    assert rules.last_number("7", []) is None
    assert rules.exact_answer("Paris", ["London", "paris"]) == 1.0
    assert rules.exact_answer("Rome", ["London", "paris"]) == 0.0
    assert rules.last_number("it is 42", [41, 42]) == 1.0  # numbers as numbers, not "[41, 42]"


def test_math_answer_on_gsm8k_and_math_answers():
    assert rules.math_answer("She earns 9 * 2 = 18 dollars.", "18") == 1.0
    assert rules.math_answer("She earns 9 * 2 = 18 dollars.", "Janet sells 9 eggs.\n#### 18") == 1.0
    assert rules.math_answer("It costs $1,234.", "1234") == 1.0
    assert rules.math_answer("18 or maybe 19", "18") == 0.0  # the last number is the answer
    assert rules.math_answer("So \\boxed{18} is it, not 19", "18") == 1.0  # a boxed answer beats the last number
    assert rules.math_answer("half: \\boxed{\\frac{1}{2}}", "0.5") == 1.0  # Math-Verify for LaTeX
    assert rules.math_answer("The answer is \\boxed{\\frac{\\pi}{2}}.", "\\frac{\\pi}{2}") == 1.0
    assert rules.math_answer("The answer is \\boxed{\\pi}.", "\\frac{\\pi}{2}") == 0.0
    assert rules.math_answer("I do not know", "\\frac{1}{2}") == 0.0  # nothing to parse: wrong
    # the solution's last \\boxed{} is the answer (the stored one may be mangled: "\\le(" for "\\left(")
    solution = "Hence $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$"
    assert rules.math_answer("\\boxed{(3, \\frac{\\pi}{2})}", "\\le(3,\\frac{\\pi}{2}\\right)", solution) == 1.0
    assert rules.math_answer("anything", None) is None


def test_ifeval_share_of_instructions_followed():
    record = {"instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"], "kwargs": [{}, {}]}
    assert rules.ifeval_share("all lowercase and no commas here", record) == 1.0
    assert rules.ifeval_share("All lowercase? no: a capital", record) == 0.5
    assert rules.ifeval_share("A capital, and a comma", record) == 0.0
    words = {"instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"relation": "at least", "num_words": 5}]}  # fmt: skip
    assert rules.ifeval_share("one two three four five", words) == 1.0
    assert rules.ifeval_share("one two three", words) == 0.0
    # loose also tries the answer without its first line (a "Sure, here it is:" preamble)
    quoted = {"instruction_id_list": ["startend:quotation"], "kwargs": [{}]}
    answer = 'Sure:\n"a quoted answer"'
    assert rules.ifeval_share(answer, quoted, "strict") == 0.0 and rules.ifeval_share(answer, quoted, "loose") == 1.0


def ppo_config(sources):
    from align.config.ppo import PPOConfig

    return validate(
        PPOConfig,
        {
            "policy": {"name_or_path": "m"},
            "data": {"train": "prompts.jsonl"},
            "reward": {"sources": sources},
            "critic": {"init": "policy"},
            "output": {"output_dir": "out"},
        },
    )


def test_rows_a_rule_cannot_read_are_refused_naming_the_row():
    from align.ppo.scoring import check_rule_fields

    config = ppo_config([{"rule": "ifeval"}])
    good = {"prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    check_rule_fields(config, [good], "prompts.jsonl")
    with pytest.raises(AlignInputError, match=r"prompts.jsonl row 2: rule ifeval needs kwargs"):
        check_rule_fields(config, [good, {"prompt": "p", "instruction_id_list": ["punctuation:no_comma"]}], "prompts.jsonl")  # fmt: skip
    with pytest.raises(AlignInputError, match=r"row 1: unknown instruction id\(s\) punctuation:no_dots; .*punctuation:no_comma"):  # fmt: skip
        check_rule_fields(config, [{**good, "instruction_id_list": ["punctuation:no_dots"]}], "prompts.jsonl")
    with pytest.raises(AlignInputError, match="one kwargs dict per id"):
        check_rule_fields(config, [{**good, "kwargs": [{}, {}]}], "prompts.jsonl")
    math = ppo_config([{"rule": "math_answer", "reference_column": "answer"}])
    check_rule_fields(math, [{"prompt": "p", "answer": "18"}], "gsm8k.jsonl")
    with pytest.raises(AlignInputError, match=r"gsm8k.jsonl row 1: rule math_answer needs the answer in column 'answer'"):  # fmt: skip
        check_rule_fields(math, [{"prompt": "p", "answer": ""}], "gsm8k.jsonl")


def test_a_regex_that_does_not_compile_is_refused_with_the_config():
    with pytest.raises(ValueError, match="does not compile"):
        RewardSource.model_validate({"rule": "regex", "pattern": "([a-z"})
    assert RewardSource.model_validate({"rule": "regex", "pattern": "[a-z]+"}).pattern == "[a-z]+"
