"""SFT conversations -> token ids with a loss mask, and length accounting.

Records become conversations in align.data.conversation (one rule for every stage); each is
rendered with the model's chat template here. The loss
mask covers the assistant turns only: each assistant turn's tokens are found by rendering
the conversation up to that turn with and without it, which works for any template that
renders a prefix of a conversation as a prefix of its tokens (no `{% generation %}` tags
needed). Tokenizing here rather than inside TRL lets us count and report the examples
that do not fit `max_length`, which TRL truncates silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from align.data.conversation import Message, detect_format, to_conversation
from align.errors import AlignInputError


def _render_ids(tokenizer, messages: list[Message], add_generation_prompt: bool, tools=None) -> list[int]:
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=True, tools=tools
    )
    return list(out["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize_conversation(tokenizer, conversation: list[Message], tools=None) -> tuple[list[int], list[int]]:
    """(input_ids, completion_mask): mask is 1 on the tokens of every assistant turn, 0 elsewhere.
    `tools` (JSON schemas) go to the template, which shows them as the model will see them.

    For assistant turn i: ids(messages[:i], generation prompt) is where the turn starts and
    ids(messages[:i+1]) where it ends; the mask covers the turn's text and its end-of-turn
    token (EOS, <|im_end|>, <|eot_id|>, <end_of_turn>...), which the model must learn to emit to
    stop, and not what a template writes after it (ChatML's and Gemma's newline): the span is cut
    after its last special token, when it has one.
    """
    if conversation and conversation[0]["role"] == "text":
        return tokenize_text(tokenizer, conversation[0]["content"])
    ids = _render_ids(tokenizer, conversation, add_generation_prompt=False, tools=tools)
    mask = [0] * len(ids)
    added = getattr(tokenizer, "added_tokens_decoder", {})
    special = set(tokenizer.all_special_ids) | {i for i, token in added.items() if getattr(token, "special", False)}
    for i, message in enumerate(conversation):
        if message["role"] != "assistant":
            continue
        start = _common_prefix(_render_ids(tokenizer, conversation[:i], True, tools), ids) if i else 0
        end = _common_prefix(_render_ids(tokenizer, conversation[: i + 1], False, tools), ids)
        end = _through_end_of_turn(ids, start, end, special)
        for t in range(start, end):
            mask[t] = 1
    return ids, mask


def _through_end_of_turn(ids: list[int], start: int, end: int, special: set[int]) -> int:
    """The span [start, end) cut just after its last special token (the end of turn), if it has one."""
    for t in range(end - 1, start - 1, -1):
        if ids[t] in special:
            return t + 1
    return end


def tokenize_record(
    tokenizer, conversation: list[Message], source: str, number: int, tools=None
) -> tuple[list[int], list[int]]:
    """tokenize_conversation, with a template's own refusal (Gemma has no system role) as one clear error."""
    from jinja2.exceptions import TemplateError

    try:
        return tokenize_conversation(tokenizer, conversation, tools)
    except TemplateError as exc:
        roles = ", ".join(m["role"] for m in conversation)
        hint = " (this template has no system role: drop system_prompt and system turns)" if "system" in roles else ""
        raise AlignInputError(
            f"{source}: record {number}: the model's chat template refused the conversation ({roles}): {exc}{hint}; "
            "or give another template with model.chat_template"
        ) from None


def tokenize_text(tokenizer, text: str) -> tuple[list[int], list[int]]:
    """Plain text: every token is a target, EOS appended so documents end."""
    ids = list(tokenizer(text)["input_ids"])
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids.append(tokenizer.eos_token_id)
    return ids, [1] * len(ids)


@dataclass
class LengthReport:
    """What `fit_lengths` did: how many examples did not fit max_length and what became of them."""

    total: int = 0
    too_long: int = 0
    truncated: int = 0
    dropped: int = 0
    max_tokens: int = 0
    first_too_long: int | None = None  # 1-based record number
    mean_tokens: float = 0.0

    def summary(self, max_length: int, name: str) -> str:
        if not self.too_long:
            return (
                f"{name}: {self.total} examples, all within max_length={max_length} (longest {self.max_tokens} tokens)"
            )
        return (
            f"{name}: {self.too_long} of {self.total} examples are longer than max_length={max_length} "
            f"(longest {self.max_tokens} tokens, first is record {self.first_too_long}): "
            f"truncated {self.truncated}, dropped {self.dropped} (no response tokens left or too_long=drop)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("total", "too_long", "truncated", "dropped", "max_tokens", "mean_tokens")}


@dataclass
class Encoded:
    """Tokenized examples plus their accounting."""

    input_ids: list[list[int]] = field(default_factory=list)
    completion_mask: list[list[int]] = field(default_factory=list)
    lengths: LengthReport = field(default_factory=LengthReport)

    def to_dataset(self):
        from datasets import Dataset

        return Dataset.from_dict({"input_ids": self.input_ids, "completion_mask": self.completion_mask})

    @property
    def num_tokens(self) -> int:
        return sum(len(ids) for ids in self.input_ids)


def fit_lengths(pairs: Iterable[tuple[list[int], list[int]]], max_length: int, policy: str, source: str) -> Encoded:
    """Apply the too-long policy ('truncate' keeps the start, 'drop', 'error') and count what happened."""
    out = Encoded()
    report = out.lengths
    for number, (ids, mask) in enumerate(pairs, start=1):
        report.total += 1
        report.max_tokens = max(report.max_tokens, len(ids))
        report.mean_tokens += len(ids)
        if len(ids) > max_length:
            report.too_long += 1
            report.first_too_long = report.first_too_long or number
            if policy == "error":
                raise AlignInputError(
                    f"{source}: record {number} has {len(ids)} tokens, more than data.max_length={max_length}; "
                    "raise data.max_length, or set too_long: truncate (or drop)"
                )
            if policy == "drop":
                report.dropped += 1
                continue
            ids, mask = ids[:max_length], mask[:max_length]
            if not any(mask):
                report.dropped += 1
                continue
            report.truncated += 1
        elif not any(mask):
            report.dropped += 1
            continue
        out.input_ids.append(ids)
        out.completion_mask.append(mask)
    report.mean_tokens = round(report.mean_tokens / max(report.total, 1), 1)
    return out


def encode_records(
    records: list[dict[str, Any]],
    tokenizer,
    fmt: str,
    max_length: int,
    policy: str,
    source: str,
    system_prompt: str | None = None,
) -> Encoded:
    """Records -> tokenized, length-checked examples; an empty result is an input error."""
    if not records:
        raise AlignInputError(f"{source}: no records; add data or point data.train elsewhere")
    fmt = detect_format(records[0], fmt, source)
    pairs = (
        tokenize_record(
            tokenizer, to_conversation(r, fmt, source, n, system_prompt), source, n, record_tools(r, source, n)
        )
        for n, r in enumerate(records, start=1)
    )
    encoded = fit_lengths(pairs, max_length, policy, source)
    if not encoded.input_ids:
        raise AlignInputError(
            f"{source}: no usable examples left: {encoded.lengths.summary(max_length, 'data')}; "
            "raise data.max_length or check the data"
        )
    return encoded


def record_tools(record: dict[str, Any], source: str, number: int) -> list[dict] | None:
    """A record's `tools` column (TRL's name): the JSON schemas of the functions its conversation
    may call, a list or that list as a JSON string; None when there is none."""
    import json

    tools = record.get("tools")
    if tools is None:
        return None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError:
            raise AlignInputError(f"{source}: record {number}: 'tools' is a string but not JSON") from None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise AlignInputError(
            f"{source}: record {number}: 'tools' must be a list of JSON schemas "
            '({"type": "function", "function": {"name", "description", "parameters"}})'
        )
    return tools or None


def conversations(
    records: list[dict[str, Any]], fmt: str, source: str, system_prompt: str | None = None
) -> list[list[Message]]:
    """Records -> conversations (for evaluation, where prompts are generated from, not trained on)."""
    if not records:
        raise AlignInputError(f"{source}: no records")
    fmt = detect_format(records[0], fmt, source)
    return [to_conversation(r, fmt, source, n, system_prompt) for n, r in enumerate(records, start=1)]
