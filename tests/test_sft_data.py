"""SFT data: format detection, conversion, completion-only masks on hand-built examples, length accounting."""

from __future__ import annotations

import json

import pytest

from align.data.conversation import detect_format, prompt_and_answer, to_conversation
from align.errors import AlignInputError
from align.sft.data import encode_records, fit_lengths, tokenize_conversation


@pytest.fixture(scope="module")
def tokenizer(tiny_world):
    from align.config.common import ModelConfig
    from align.models import load_tokenizer

    return load_tokenizer(ModelConfig(name_or_path=str(tiny_world / "model")))


def masked_text(tokenizer, ids, mask):
    return tokenizer.decode([t for t, m in zip(ids, mask) if m])


def test_detect_format_by_columns():
    assert detect_format({"instruction": "a", "input": "", "output": "b"}, "auto", "f") == "alpaca"
    assert detect_format({"prompt": "a", "completion": "b"}, "auto", "f") == "prompt_completion"
    assert detect_format({"messages": []}, "auto", "f") == "messages"
    assert detect_format({"text": "x"}, "auto", "f") == "text"
    assert detect_format({"question": "a"}, "alpaca", "f") == "alpaca"  # explicit wins
    with pytest.raises(AlignInputError, match=r"cannot tell the record format.*question.*data.columns"):
        detect_format({"question": "a", "answer": "b"}, "auto", "data.jsonl")
    with pytest.raises(AlignInputError, match="not a known format"):
        detect_format({}, "oasst_tree", "f")  # (sharegpt is a known format now)


def test_alpaca_becomes_user_and_assistant_turns():
    conv = to_conversation(
        {"instruction": "Sort these.", "input": "b, a", "output": "a, b"}, "alpaca", "f", 1, "Be brief."
    )
    assert conv == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Sort these.\n\nb, a"},
        {"role": "assistant", "content": "a, b"},
    ]
    assert prompt_and_answer(conv) == (conv[:2], "a, b")


def test_missing_column_names_record_and_columns():
    with pytest.raises(AlignInputError, match=r"f.jsonl: record 3 has no column 'output'.*instruction"):
        to_conversation({"instruction": "x"}, "alpaca", "f.jsonl", 3)


def test_completion_only_mask_on_hand_built_example(tokenizer):
    """Only the answer and its end-of-turn tokens are targets; the template and question are not."""
    conv = to_conversation({"instruction": "What is 2 + 3?", "input": "", "output": "5"}, "alpaca", "f", 1)
    ids, mask = tokenize_conversation(tokenizer, conv)
    prompt_ids = tokenizer.apply_chat_template(conv[:1], tokenize=True, add_generation_prompt=True, return_dict=True)[
        "input_ids"
    ]
    n_prompt = len(prompt_ids)
    assert ids[:n_prompt] == list(prompt_ids)  # the prompt is a prefix of the full sequence
    end = ids.index(tokenizer.eos_token_id, n_prompt) + 1  # through the end-of-turn token, not the newline after it
    assert mask == [0] * n_prompt + [1] * (end - n_prompt) + [0] * (len(ids) - end)
    assert masked_text(tokenizer, ids, mask) == " 5" + tokenizer.eos_token  # the template puts a space before replies
    assert tokenizer.decode(ids[end:]) == "\n"  # what the template writes after the turn is not a target


def test_multi_turn_masks_every_assistant_turn(tokenizer):
    conv = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": "see you"},
    ]
    ids, mask = tokenize_conversation(tokenizer, conv)
    text = masked_text(tokenizer, ids, mask)
    assert "hello" in text and "see you" in text
    assert "hi" not in text and "bye" not in text and "user" not in text


def test_prompt_completion_and_text_formats(tokenizer):
    pc = to_conversation({"prompt": "Q?", "completion": "A."}, "prompt_completion", "f", 1)
    assert [m["role"] for m in pc] == ["user", "assistant"]
    ids, mask = tokenize_conversation(tokenizer, to_conversation({"text": "plain words"}, "text", "f", 1))
    assert all(mask) and ids[-1] == tokenizer.eos_token_id


def test_fit_lengths_counts_truncated_and_dropped():
    pairs = [
        ([1, 2, 3], [0, 1, 1]),  # fits
        ([1, 2, 3, 4, 5, 6], [0, 0, 1, 1, 1, 1]),  # truncated to 4, keeps 2 targets
        ([1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 1]),  # truncation removes every target -> dropped
    ]
    out = fit_lengths(pairs, 4, "truncate", "f")
    assert (out.lengths.total, out.lengths.too_long, out.lengths.truncated, out.lengths.dropped) == (3, 2, 1, 1)
    assert out.input_ids == [[1, 2, 3], [1, 2, 3, 4]] and out.completion_mask[1] == [0, 0, 1, 1]
    assert out.lengths.first_too_long == 2 and out.lengths.max_tokens == 6
    assert "2 of 3 examples are longer than max_length=4" in out.lengths.summary(4, "train")
    dropped = fit_lengths(pairs, 4, "drop", "f")
    assert dropped.lengths.dropped == 2 and dropped.input_ids == [[1, 2, 3]]
    with pytest.raises(AlignInputError, match=r"f: record 2 has 6 tokens, more than data.max_length=4"):
        fit_lengths(pairs, 4, "error", "f")


def test_encode_records_rejects_empty_and_all_too_long(tokenizer):
    with pytest.raises(AlignInputError, match="no records"):
        encode_records([], tokenizer, "auto", 64, "truncate", "empty.jsonl")
    records = [{"instruction": "word " * 30, "output": "x"}]
    with pytest.raises(AlignInputError, match="no usable examples left.*1 of 1 examples are longer"):
        encode_records(records, tokenizer, "auto", 8, "truncate", "long.jsonl")


def test_column_mapping_through_reader(tmp_path, tokenizer):
    from align.data.io import read_records

    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "Q?", "answer": "A."}) + "\n")
    records = read_records(path, columns={"question": "instruction", "answer": "output"})
    encoded = encode_records(records, tokenizer, "auto", 64, "truncate", str(path))
    assert len(encoded.input_ids) == 1 and sum(encoded.completion_mask[0]) > 0


def test_a_template_that_refuses_a_system_turn_names_the_record(tokenizer):
    gemma_like = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}<start_of_turn>{{ m['role'] }}\\n{{ m['content'] }}<end_of_turn>\\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\\n{% endif %}"
    )
    original, tokenizer.chat_template = tokenizer.chat_template, gemma_like
    try:
        with pytest.raises(
            AlignInputError,
            match=r"f.jsonl: record 1: the model's chat template refused .*System role not "
            r"supported.*drop system_prompt",
        ):
            encode_records(
                [{"instruction": "Q", "output": "A"}], tokenizer, "auto", 64, "truncate", "f.jsonl", "Be brief."
            )
    finally:
        tokenizer.chat_template = original


def test_rows_that_mix_formats_name_the_row(tokenizer):
    rows = [{"instruction": "Q", "output": "A"}, {"messages": [{"role": "user", "content": "Q"}]}]
    with pytest.raises(
        AlignInputError,
        match=r"record 2 has no column 'instruction'.*it is a 'messages' record: rows must "
        r"share one format",
    ):
        encode_records(rows, tokenizer, "auto", 64, "truncate", "f.jsonl")


def test_tool_transcripts_train_the_calls_and_never_the_tools_answers(tokenizer):
    """OpenAI-style tool_calls become the tagged text the rollout parses; both assistant turns
    are trained, the tool's answer is not."""
    from align.tools.calls import ToolCall, parse_turn

    with_tools = tokenizer  # the demo worlds' template writes a tool's answer as a "Tool:" line
    call = {"type": "function", "function": {"name": "add", "arguments": '{"a": 17, "b": 25}'}}
    record = {
        "messages": [
            {"role": "user", "content": "What is 17 + 25?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "content": "42"},
            {"role": "assistant", "content": "17 + 25 = 42."},
        ]
    }
    conversation = to_conversation(record, "messages", "f", 1)
    assert conversation[1]["content"] == '<tool_call>{"name": "add", "arguments": {"a": 17, "b": 25}}</tool_call>'
    assert parse_turn(conversation[1]["content"], "tagged").calls == [ToolCall("add", {"a": 17, "b": 25})]
    ids, mask = tokenize_conversation(with_tools, conversation)
    trained = masked_text(with_tools, ids, mask)
    assert trained == f" {conversation[1]['content']}<|eos|> 17 + 25 = 42.<|eos|>"
    assert "Tool: 42" in with_tools.decode(ids) and "42\n" not in trained
    bad = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"function": {}}]}]}
    with pytest.raises(AlignInputError, match=r"f: record 3: message 2 of 'messages': each of 'tool_calls' needs a function name"):  # fmt: skip
        to_conversation(bad, "messages", "f", 3)


def test_a_tools_column_reaches_the_template_as_a_rollout_shows_the_tools(tokenizer):
    """TRL's `tools` column (JSON schemas, a list or a JSON string): the template shows them in
    the prompt, as the rollout's prompt_messages does, and they are never trained; a malformed
    one names the record."""
    from align.tools.environment import Workbench, tool_schemas
    from align.tools.episodes import prompt_messages

    schemas = tool_schemas(Workbench())
    call = {"function": {"name": "calculate", "arguments": {"expression": "5 + 9"}}}
    messages = [
        {"role": "user", "content": "Add 5 and 9."},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "14"},
        {"role": "assistant", "content": "5 + 9 = 14."},
    ]
    as_list, as_text = {"messages": messages, "tools": schemas}, {"messages": messages, "tools": json.dumps(schemas)}
    encoded = encode_records([as_list, as_text], tokenizer, "auto", 256, "truncate", "f.jsonl")
    assert encoded.input_ids[0] == encoded.input_ids[1]
    text = tokenizer.decode(encoded.input_ids[0])
    assert text.startswith("<|bos|>Tools: calculate(expression) sort_words(words)\nUser: Add 5 and 9.\n")
    trained = masked_text(tokenizer, encoded.input_ids[0], encoded.completion_mask[0])
    assert "Tools:" not in trained and "14\n" not in trained and trained.endswith(" 5 + 9 = 14.<|eos|>")
    # the rollout's prompt is the same text up to the assistant's first turn
    shown, options = prompt_messages(tokenizer, messages[:1], schemas)
    rollout = tokenizer.apply_chat_template(shown, tokenize=False, add_generation_prompt=True, **options)
    assert options == {"tools": schemas} and text.startswith(rollout)
    plain = encode_records([{"messages": messages}], tokenizer, "auto", 256, "truncate", "f.jsonl")
    assert "Tools:" not in tokenizer.decode(plain.input_ids[0])
    for bad, why in (({"a": 1}, "must be a list of JSON schemas"), ("[oops", "is a string but not JSON")):
        with pytest.raises(AlignInputError, match=f"f.jsonl: record 2: 'tools' {why}"):
            encode_records(
                [as_list, {"messages": messages, "tools": bad}], tokenizer, "auto", 256, "truncate", "f.jsonl"
            )
