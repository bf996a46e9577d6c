"""A model's tool calls, read in its own format (pure functions, one parser per family).

    tagged   Hermes / Qwen 2.5+ / SmolLM2: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
             one object per tag or a JSON list of them in one tag (SmolLM2's form), any number of tags
    llama3   Llama 3.1+: the whole turn is one JSON object `{"name": ..., "parameters": {...}}`
             (optionally after `<|python_tag|>`), or several separated by `;`

`family_of(chat_template)` picks the parser from the template's own markers; a config may name
one instead. A call that does not parse is kept as an error (the model's mistake, answered with
the error text and scored as the config says), never raised.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

TAGGED = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass
class ParsedTurn:
    """What a model's turn holds: its text outside the calls, the calls, and malformed calls."""

    text: str
    calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one message per call that could not be read


def _call(value: Any, arguments_key: str) -> ToolCall | str:
    """A decoded JSON value -> a ToolCall, or why it is not one."""
    if not isinstance(value, dict):
        return f"a tool call is a JSON object with a name, got {type(value).__name__}"
    name = value.get("name")
    arguments = value.get(arguments_key, value.get("arguments", value.get("parameters", {})))
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return f"the arguments of {name!r} are not JSON: {arguments[:80]!r}"
    if not isinstance(name, str) or not name:
        return 'a tool call needs a "name"'
    if not isinstance(arguments, dict):
        return f"the arguments of {name!r} must be a JSON object, got {type(arguments).__name__}"
    return ToolCall(name, arguments)


def parse_tagged(turn: str) -> ParsedTurn:
    """`<tool_call>...</tool_call>` blocks (an unclosed last tag counts: generation may stop at it)."""
    parsed = ParsedTurn(TAGGED.sub("", turn).strip())
    for body in TAGGED.findall(turn):
        try:
            value = json.loads(body.strip())
        except json.JSONDecodeError as exc:
            parsed.errors.append(f"the tool call is not JSON ({exc.msg} at character {exc.pos}): {body.strip()[:80]!r}")
            continue
        for item in value if isinstance(value, list) else [value]:
            call = _call(item, "arguments")
            (parsed.calls if isinstance(call, ToolCall) else parsed.errors).append(call)
    return parsed


def parse_llama3(turn: str) -> ParsedTurn:
    """A turn that is a JSON call (or calls separated by ';'); anything else is plain text."""
    body = turn.strip().removeprefix("<|python_tag|>").strip()
    if not body.startswith("{"):
        return ParsedTurn(turn.strip())
    parsed = ParsedTurn("")
    for part in (p for p in body.split(";") if p.strip()):
        try:
            value = json.loads(part)
        except json.JSONDecodeError as exc:
            parsed.errors.append(f"the tool call is not JSON ({exc.msg} at character {exc.pos}): {part.strip()[:80]!r}")
            continue
        call = _call(value, "parameters")
        (parsed.calls if isinstance(call, ToolCall) else parsed.errors).append(call)
    return parsed


PARSERS = {"tagged": parse_tagged, "llama3": parse_llama3}


def call_text(tool_calls: Any) -> str:
    """OpenAI-style `tool_calls` ([{"function": {"name", "arguments"}}] or [{"name", "arguments"}])
    as the tagged form the model writes and `parse_tagged` reads; ValueError says what is wrong."""
    if not isinstance(tool_calls, list):
        raise ValueError("'tool_calls' must be a list of {function: {name, arguments}}")
    tags = []
    for call in tool_calls:
        function = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            raise ValueError("each of 'tool_calls' needs a function name ({function: {name, arguments}})")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                raise ValueError(f"the arguments of {function['name']!r} are not JSON: {arguments[:80]!r}") from None
        tags.append(f"<tool_call>{json.dumps({'name': function['name'], 'arguments': arguments})}</tool_call>")
    return "\n".join(tags)


def family_of(chat_template: str | None) -> str:
    """The parser a chat template's markers call for: Llama 3's python tag or ipython role ->
    llama3; anything else (Hermes / Qwen / SmolLM2 / ChatML, or no template) -> tagged."""
    template = chat_template or ""
    if "<|python_tag|>" in template or "ipython" in template or "<|eom_id|>" in template:
        return "llama3"
    return "tagged"


def parse_turn(turn: str, family: str) -> ParsedTurn:
    if family not in PARSERS:
        raise ValueError(f"unknown tool-call format {family!r}; known: {', '.join(PARSERS)}")
    return PARSERS[family](turn)
