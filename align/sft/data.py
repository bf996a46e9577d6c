"""SFT records -> conversations -> token ids with a loss mask, and length accounting.

Every supported format (alpaca, prompt/completion, chat messages, plain text) becomes one
shape, a list of chat messages, and is rendered with the model's chat template. The loss
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

from align.errors import AlignInputError

Message = dict[str, str]

# Columns that identify a format, in the order auto-detection tries them.
FORMAT_COLUMNS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
}


def detect_format(record: dict[str, Any], requested: str, source: str) -> str:
    """The record format: `requested` unless 'auto', else the first whose columns are all present."""
    if requested != "auto":
        if requested not in FORMAT_COLUMNS:
            raise AlignInputError(
                f"data.format = {requested!r} is not a known format; use auto, {', '.join(FORMAT_COLUMNS)}"
            )
        return requested
    for name, columns in FORMAT_COLUMNS.items():
        if all(c in record for c in columns):
            return name
    expected = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in FORMAT_COLUMNS.items())
    raise AlignInputError(
        f"{source}: cannot tell the record format from its columns ({', '.join(sorted(record)) or 'none'}); "
        f"expected one of [{expected}]; rename columns with data.columns (e.g. data.columns.question=instruction)"
    )


def _text(value: Any, column: str, source: str, number: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise AlignInputError(f"{source}: record {number}: column '{column}' must be text, got {type(value).__name__}")
    return value


def _as_messages(value: Any, role: str, column: str, source: str, number: int) -> list[Message]:
    """A prompt/completion field is either text (one message of `role`) or already a message list."""
    if isinstance(value, list):
        return _check_messages(value, column, source, number)
    return [{"role": role, "content": _text(value, column, source, number)}]


def _check_messages(messages: Any, column: str, source: str, number: int) -> list[Message]:
    if not isinstance(messages, list) or not messages:
        raise AlignInputError(f"{source}: record {number}: '{column}' must be a non-empty list of {{role, content}} messages")
    for turn, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise AlignInputError(
                f"{source}: record {number}: message {turn} of '{column}' needs 'role' and 'content' keys"
            )
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def to_conversation(record: dict[str, Any], fmt: str, source: str, number: int, system_prompt: str | None = None) -> list[Message]:
    """One record as chat messages; the assistant turns are what the model learns to say."""
    missing = [c for c in FORMAT_COLUMNS[fmt] if c not in record]
    if missing:
        raise AlignInputError(
            f"{source}: record {number} has no column {', '.join(repr(m) for m in missing)} needed by the "
            f"'{fmt}' format (it has {', '.join(sorted(record)) or 'none'}); map names with data.columns"
        )
    if fmt == "messages":
        conversation = _check_messages(record["messages"], "messages", source, number)
    elif fmt == "alpaca":
        instruction = _text(record["instruction"], "instruction", source, number)
        extra = _text(record.get("input"), "input", source, number)
        prompt = f"{instruction}\n\n{extra}" if extra else instruction
        conversation = [{"role": "user", "content": prompt}, {"role": "assistant", "content": _text(record["output"], "output", source, number)}]
    elif fmt == "prompt_completion":
        conversation = _as_messages(record["prompt"], "user", "prompt", source, number) + _as_messages(
            record["completion"], "assistant", "completion", source, number
        )
    else:  # text: plain language modelling, handled by tokenize_text
        return [{"role": "text", "content": _text(record["text"], "text", source, number)}]
    if system_prompt and conversation[0]["role"] != "system":
        conversation = [{"role": "system", "content": system_prompt}, *conversation]
    return conversation


def prompt_of(conversation: list[Message]) -> list[Message]:
    """Everything before the last assistant turn: what a model is asked at evaluation time."""
    last = max((i for i, m in enumerate(conversation) if m["role"] == "assistant"), default=len(conversation))
    return conversation[:last]


def response_of(conversation: list[Message]) -> str:
    """The last assistant turn (the reference answer of an evaluation example)."""
    answers = [m["content"] for m in conversation if m["role"] == "assistant"]
    return answers[-1] if answers else ""


def _render_ids(tokenizer, messages: list[Message], add_generation_prompt: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=True)
    return list(out["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize_conversation(tokenizer, conversation: list[Message]) -> tuple[list[int], list[int]]:
    """(input_ids, completion_mask): mask is 1 on the tokens of every assistant turn, 0 elsewhere.

    For assistant turn i: ids(messages[:i], generation prompt) is where the turn starts and
    ids(messages[:i+1]) where it ends, so the mask includes the template's end-of-turn
    tokens (EOS), which the model must learn to emit to stop.
    """
    if conversation and conversation[0]["role"] == "text":
        return tokenize_text(tokenizer, conversation[0]["content"])
    ids = _render_ids(tokenizer, conversation, add_generation_prompt=False)
    mask = [0] * len(ids)
    for i, message in enumerate(conversation):
        if message["role"] != "assistant":
            continue
        start = _common_prefix(_render_ids(tokenizer, conversation[:i], add_generation_prompt=True), ids) if i else 0
        end = _common_prefix(_render_ids(tokenizer, conversation[: i + 1], add_generation_prompt=False), ids)
        for t in range(start, end):
            mask[t] = 1
    return ids, mask


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
            return f"{name}: {self.total} examples, all within max_length={max_length} (longest {self.max_tokens} tokens)"
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
    records: list[dict[str, Any]], tokenizer, fmt: str, max_length: int, policy: str, source: str, system_prompt: str | None = None
) -> Encoded:
    """Records -> tokenized, length-checked examples; an empty result is an input error."""
    if not records:
        raise AlignInputError(f"{source}: no records; add data or point data.train elsewhere")
    fmt = detect_format(records[0], fmt, source)
    pairs = (
        tokenize_conversation(tokenizer, to_conversation(r, fmt, source, n, system_prompt))
        for n, r in enumerate(records, start=1)
    )
    encoded = fit_lengths(pairs, max_length, policy, source)
    if not encoded.input_ids:
        raise AlignInputError(
            f"{source}: no usable examples left: {encoded.lengths.summary(max_length, 'data')}; "
            "raise data.max_length or check the data"
        )
    return encoded


def conversations(records: list[dict[str, Any]], fmt: str, source: str, system_prompt: str | None = None) -> list[list[Message]]:
    """Records -> conversations (for evaluation, where prompts are generated from, not trained on)."""
    if not records:
        raise AlignInputError(f"{source}: no records")
    fmt = detect_format(records[0], fmt, source)
    return [to_conversation(r, fmt, source, n, system_prompt) for n, r in enumerate(records, start=1)]
