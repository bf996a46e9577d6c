"""One rule for reading records and prompts, on each format."""

from __future__ import annotations

import pytest

from align.data.conversation import prompt_and_answer, read_prompt, to_conversation
from align.errors import AlignInputError

USER = {"role": "user", "content": "What is 2 + 3?"}


@pytest.mark.parametrize(
    "record",
    [
        {"prompt": "What is 2 + 3?"},
        {"prompt": "What is 2 + 3?", "completion": "5"},
        {"prompt": [USER], "completion": [{"role": "assistant", "content": "5"}]},
        {"instruction": "What is 2 + 3?"},
        {"instruction": "What is 2 + 3?", "input": "", "output": "5"},
        {"messages": [USER]},
        {"messages": [USER, {"role": "assistant", "content": "5"}]},
    ],
)
def test_every_format_reads_as_the_same_prompt(record):
    prompt = read_prompt(record, "f.jsonl", 1)
    assert prompt.text == "What is 2 + 3?" and prompt.messages == [USER]


def test_alpaca_input_and_multi_turn_prompts():
    assert read_prompt({"instruction": "Sort these.", "input": "b, a"}, "f", 1).text == "Sort these.\n\nb, a"
    chat = [
        {"role": "system", "content": "Be brief."},
        USER,
        {"role": "assistant", "content": "5"},
        {"role": "user", "content": "And 2 + 4?"},
        {"role": "assistant", "content": "6"},
    ]
    prompt = read_prompt({"messages": chat}, "f", 1)
    assert prompt.text == "And 2 + 4?" and prompt.messages == chat[:4]  # only the final answer is dropped


def test_prompt_and_answer_rule():
    conv = to_conversation({"instruction": "Q", "output": "A"}, "alpaca", "f", 1, system_prompt="S")
    assert prompt_and_answer(conv) == (conv[:2], "A")
    assert prompt_and_answer([USER]) == ([USER], None)  # ends with the user: all prompt


def test_prompt_errors_name_the_record():
    with pytest.raises(AlignInputError, match="f.jsonl: record 4: cannot tell the record format.*question"):
        read_prompt({"question": "Q"}, "f.jsonl", 4)
    with pytest.raises(AlignInputError, match="record 2: the prompt has no user turn"):
        read_prompt({"messages": [{"role": "system", "content": "S"}]}, "f.jsonl", 2)
    with pytest.raises(AlignInputError, match="not a known format"):
        read_prompt({"text": "plain"}, "f.jsonl", 1, fmt="text")
    with pytest.raises(AlignInputError, match="record 3: message 1 of 'messages' needs 'role' and 'content'"):
        read_prompt({"messages": [{"from": "human", "value": "hi"}]}, "f.jsonl", 3)


def test_sharegpt_conversations(repo_root):
    import json

    rows = [json.loads(line) for line in (repo_root / "tests/fixtures/sharegpt.jsonl").read_text().splitlines()]
    conv = to_conversation(rows[0], "sharegpt", "f", 1)
    assert conv == [{"role": "system", "content": "Answer briefly."}, USER, {"role": "assistant", "content": "5"}]
    prompt = read_prompt(rows[1], "f", 2)
    assert prompt.text == "Another one?" and [m["role"] for m in prompt.messages] == ["user", "assistant", "user"]
    with pytest.raises(AlignInputError, match="record 5: turn 1 of 'conversations' needs 'from'"):
        to_conversation({"conversations": [{"from": "bot", "value": "x"}]}, "sharegpt", "f", 5)
