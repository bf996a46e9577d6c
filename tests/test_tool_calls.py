"""Tool calls read in each model family's own format, on hand-written outputs; the calculator
tool on hand-computed expressions and on what it must refuse."""

from __future__ import annotations

import pytest

from align.tools.calculator import CalculatorError, calculate
from align.tools.calls import ToolCall, family_of, parse_turn


def test_hermes_and_qwen_tags_one_object_each():
    turn = (
        "Let me add them.\n<tool_call>\n"
        '{"name": "calculator", "arguments": {"expression": "17 + 25"}}\n</tool_call>\n'
        '<tool_call>{"name": "sort", "arguments": {"items": [3, 1, 2]}}</tool_call>'
    )
    parsed = parse_turn(turn, "tagged")
    assert parsed.calls == [ToolCall("calculator", {"expression": "17 + 25"}), ToolCall("sort", {"items": [3, 1, 2]})]
    assert parsed.text == "Let me add them." and parsed.errors == []


def test_smollm2_puts_a_list_in_one_tag():
    turn = '<tool_call>[{"name": "calculator", "arguments": {"expression": "6*7"}}, {"name": "now", "arguments": {}}]</tool_call>'  # fmt: skip
    parsed = parse_turn(turn, "tagged")
    assert parsed.calls == [ToolCall("calculator", {"expression": "6*7"}), ToolCall("now", {})]


def test_llama3_json_turns_and_plain_answers():
    parsed = parse_turn('<|python_tag|>{"name": "calculator", "parameters": {"expression": "2+2"}}', "llama3")
    assert parsed.calls == [ToolCall("calculator", {"expression": "2+2"})] and parsed.text == ""
    two = parse_turn('{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"x": 1}}', "llama3")
    assert [c.name for c in two.calls] == ["a", "b"]
    assert parse_turn("The answer is 4.", "llama3").calls == []


def test_malformed_calls_are_errors_for_the_model_not_exceptions():
    parsed = parse_turn('<tool_call>{"name": "calculator", "arguments": {"expression": "1+1"</tool_call>', "tagged")
    assert parsed.calls == [] and parsed.errors[0].startswith("the tool call is not JSON")
    assert 'needs a "name"' in parse_turn('<tool_call>{"arguments": {}}</tool_call>', "tagged").errors[0]
    assert "must be a JSON object" in parse_turn('<tool_call>{"name": "f", "arguments": [1]}</tool_call>', "tagged").errors[0]  # fmt: skip
    # arguments written as a JSON string are read; an unclosed last tag (generation stopped) counts
    parsed = parse_turn('<tool_call>{"name": "f", "arguments": "{\\"x\\": 2}"}', "tagged")
    assert parsed.calls == [ToolCall("f", {"x": 2})]
    with pytest.raises(ValueError, match="known: tagged, llama3"):
        parse_turn("x", "mistral")


def test_the_family_comes_from_the_chat_template():
    llama31 = "{{- '<|start_header_id|>ipython<|end_header_id|>' }}{{- '<|python_tag|>' }}"
    qwen = "{%- if tools %}<tools>{% for tool in tools %}{{ tool | tojson }}{% endfor %}</tools><tool_call>"
    assert family_of(llama31) == "llama3" and family_of(qwen) == "tagged" and family_of(None) == "tagged"


@pytest.mark.parametrize(
    "expression, value",
    [("17 + 25", "42"), ("2 * (3 + 4)", "14"), ("7 / 2", "3.5"), ("8 / 2", "4"), ("-3 ** 2", "-9"),
     ("2 ^ 10", "1024"), ("6 × 7", "42"), ("10 // 3", "3"), ("10 % 3", "1"), ("0.1 + 0.2", "0.3")],
)  # fmt: skip
def test_calculator_by_hand(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize(
    "expression, words",
    [("__import__('os').system('ls')", "only numbers"), ("x + 1", "only numbers"), ("1 / 0", "division by zero"),
     ("9 ** 9999", "exponent"), ("10 ** 40", "out of range"), ("2 +", "not an arithmetic expression"),
     ("", "1 to 200"), ("1" * 300, "1 to 200"), ("(-1) ** 0.5", "out of range")],
)  # fmt: skip
def test_calculator_refuses_what_is_not_arithmetic(expression, words):
    with pytest.raises(CalculatorError, match=words.replace("(", r"\(")):
        calculate(expression)
