"""Records -> chat messages: the one rule every stage uses to read a training example or a prompt.

Formats (auto-detected by their columns, in this order):

    messages           {"messages": [{role, content}, ...]}
    sharegpt           {"conversations": [{from, value}, ...]}  (from: human / gpt / system)
    alpaca             {"instruction", "input"?, "output"}
    prompt_completion  {"prompt", "completion"}  (each text, or a list of messages)
    text               {"text"}  (plain language modelling; training only)

A training example needs its response column (output / completion); a prompt does not.
The prompt of a conversation is every turn before its final assistant turn, and that turn
is the reference answer; a conversation that ends with the user is all prompt. Column names
are mapped before this (data.columns), so a dataset with other names reads the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from align.errors import AlignInputError

Message = dict[str, str]
RecordFormat = Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion", "text"]  # training examples
PromptFormat = Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion"]  # prompts (answers optional)
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}

# Columns that identify a format, in the order auto-detection tries them.
FORMAT_COLUMNS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
}
# The same formats read as prompts: the response columns become optional.
PROMPT_COLUMNS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction",),
    "prompt_completion": ("prompt",),
}


def detect_format(record: dict[str, Any], requested: str, source: str, need_response: bool = True) -> str:
    """The record format: `requested` unless 'auto', else the first whose columns are all present."""
    known = FORMAT_COLUMNS if need_response else PROMPT_COLUMNS
    if requested != "auto":
        if requested not in known:
            raise AlignInputError(f"data.format = {requested!r} is not a known format; use auto, {', '.join(known)}")
        return requested
    for name, columns in known.items():
        if all(c in record for c in columns):
            return name
    expected = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in known.items())
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
        return check_messages(value, column, source, number)
    return [{"role": role, "content": _text(value, column, source, number)}]


def check_messages(messages: Any, column: str, source: str, number: int) -> list[Message]:
    """A non-empty list of {role, content} dicts, as plain strings. An assistant message may
    carry OpenAI-style `tool_calls` instead of (or beside) its content; they are written into
    its content as the model writes calls (align.tools.calls.call_text), so SFT teaches the
    exact text the rollout reads back."""
    from align.tools.calls import call_text

    if not isinstance(messages, list) or not messages:
        raise AlignInputError(
            f"{source}: record {number}: '{column}' must be a non-empty list of {{role, content}} messages"
        )
    out = []
    for turn, message in enumerate(messages, start=1):
        has_calls = isinstance(message, dict) and message.get("tool_calls")
        if not isinstance(message, dict) or "role" not in message or ("content" not in message and not has_calls):
            raise AlignInputError(
                f"{source}: record {number}: message {turn} of '{column}' needs 'role' and 'content' keys"
            )
        content = "" if message.get("content") is None else str(message["content"])
        if has_calls:
            try:
                calls = call_text(message["tool_calls"])
            except ValueError as exc:
                raise AlignInputError(f"{source}: record {number}: message {turn} of '{column}': {exc}") from None
            content = f"{content}\n{calls}" if content.strip() else calls
        out.append({"role": str(message["role"]), "content": content})
    return out


def sharegpt_messages(turns: Any, source: str, number: int) -> list[Message]:
    """ShareGPT turns {from: human | gpt | system, value} as chat messages."""
    if not isinstance(turns, list) or not turns:
        raise AlignInputError(
            f"{source}: record {number}: 'conversations' must be a non-empty list of {{from, value}} turns"
        )
    out = []
    for i, turn in enumerate(turns, start=1):
        who = turn.get("from") if isinstance(turn, dict) else None
        if who not in SHAREGPT_ROLES or "value" not in turn:
            raise AlignInputError(
                f"{source}: record {number}: turn {i} of 'conversations' needs 'from' ({', '.join(SHAREGPT_ROLES)}) "
                f"and 'value' (got {turn!r:.80})"
            )
        out.append({"role": SHAREGPT_ROLES[who], "content": str(turn["value"])})
    return out


def to_conversation(
    record: dict[str, Any],
    fmt: str,
    source: str,
    number: int,
    system_prompt: str | None = None,
    need_response: bool = True,
) -> list[Message]:
    """One record as chat messages; the assistant turns are what the model learns to say."""
    known = FORMAT_COLUMNS if need_response else PROMPT_COLUMNS
    missing = [c for c in known[fmt] if c not in record]
    if missing:
        other = next((name for name, cols in known.items() if name != fmt and all(c in record for c in cols)), None)
        mixed = f"; it is a '{other}' record: rows must share one format (the first row's)" if other else ""
        raise AlignInputError(
            f"{source}: record {number} has no column {', '.join(repr(m) for m in missing)} needed by the "
            f"'{fmt}' format (it has {', '.join(sorted(record)) or 'none'}){mixed}; map names with data.columns"
        )
    if fmt == "messages":
        conversation = check_messages(record["messages"], "messages", source, number)
    elif fmt == "sharegpt":
        conversation = sharegpt_messages(record["conversations"], source, number)
    elif fmt == "alpaca":
        instruction = _text(record["instruction"], "instruction", source, number)
        extra = _text(record.get("input"), "input", source, number)
        conversation = [{"role": "user", "content": f"{instruction}\n\n{extra}" if extra else instruction}]
        if "output" in record:
            conversation.append({"role": "assistant", "content": _text(record["output"], "output", source, number)})
    elif fmt == "prompt_completion":
        conversation = _as_messages(record["prompt"], "user", "prompt", source, number)
        if "completion" in record:
            conversation += _as_messages(record["completion"], "assistant", "completion", source, number)
    else:  # text: plain language modelling, handled by the SFT tokenizer
        return [{"role": "text", "content": _text(record["text"], "text", source, number)}]
    if system_prompt and conversation[0]["role"] != "system":
        conversation = [{"role": "system", "content": system_prompt}, *conversation]
    return conversation


def prompt_and_answer(conversation: list[Message]) -> tuple[list[Message], str | None]:
    """(prompt turns, reference answer): a final assistant turn is the answer and the turns before it
    the prompt; a conversation that ends with another role is all prompt (answer None)."""
    if conversation and conversation[-1]["role"] == "assistant":
        return conversation[:-1], conversation[-1]["content"]
    return conversation, None


@dataclass(frozen=True)
class ChatPrompt:
    """A request to a model: its turns, and the last user turn as plain text (what annotators,
    the reward model and the gold rule read)."""

    text: str
    messages: list[Message]


def read_prompt(record: dict[str, Any], source: str, number: int, fmt: str = "auto") -> ChatPrompt:
    """A prompts-file row (or a full example, whose answer is dropped) as a ChatPrompt."""
    fmt = detect_format(record, fmt, f"{source}: record {number}", need_response=False)
    messages, _ = prompt_and_answer(to_conversation(record, fmt, source, number, need_response=False))
    users = [m["content"] for m in messages if m["role"] == "user"]
    if not users:
        raise AlignInputError(
            f"{source}: record {number}: the prompt has no user turn (roles: {', '.join(m['role'] for m in messages)})"
        )
    return ChatPrompt(users[-1], messages)
