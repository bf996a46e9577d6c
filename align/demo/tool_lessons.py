"""The demo world's tool lessons: its sums and sorts answered through the built-in `workbench`
tools (calculator and word sorter) instead of from memory, which its 2.7M-parameter model never
manages (0.00 held-out after SFT).

    tools/sft.jsonl            the SFT-train rows as chat messages, the arithmetic and sorting
                               ones as transcripts with the tools' schemas (`tools`, which the
                               chat template shows as a rollout does): the call, the tool's
                               answer, the reply; and practice transcripts on fresh sums and
                               word lists (never a held-out one): copying numbers and words into
                               a call is the skill, and the world's 253 sums and sorts are few
    tools/prompts_train.jsonl  the arithmetic and sorting prompts of preference/train, with their
                               references (GRPO's prompts; the answer rule reads `reference`)
    tools/prompts_test.jsonl   those of sft/test and preference/test: held out
"""

from __future__ import annotations

import random
from typing import Any

from align.demo import tasks
from align.demo.tasks import Item, render_prompt

TOOL_TASKS = ("arithmetic", "sort_words")
ENVIRONMENT = "workbench"
PRACTICE_ROUNDS = 2  # every sum a + b (0 <= a, b <= 15) but the held-out ones, twice, in random phrasings
PRACTICE_SORTS = 500


def operands(item: Item) -> str:
    """A sum's expression, whatever the question's phrasing: "5 + 12 = 17." -> "5 + 12"."""
    return item.polite.split(" =")[0]


def tool_call(item: Item) -> dict[str, Any]:
    """The call that answers `item`: the sum as an expression, or the words to sort."""
    if item.task == "arithmetic":
        return {"name": "calculate", "arguments": {"expression": operands(item)}}
    return {"name": "sort_words", "arguments": {"words": item.input}}


def lesson(item: Item) -> list[dict[str, Any]]:
    """One transcript: user, the assistant's call, the tool's answer, the reply that passes it on."""
    from align.tools.environment import BUILT_IN

    call = tool_call(item)
    answer = getattr(BUILT_IN[ENVIRONMENT](), call["name"])(**call["arguments"])
    reply = f"The answer is {answer}." if item.task == "arithmetic" else f"In alphabetical order: {answer}."
    return [
        {"role": "user", "content": item.prompt},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]},
        {"role": "tool", "content": answer},
        {"role": "assistant", "content": reply},  # the tool's answer, copied
    ]


def schemas() -> list[dict[str, Any]]:
    from align.tools.environment import BUILT_IN, tool_schemas

    return tool_schemas(BUILT_IN[ENVIRONMENT]())


def practice_items(held_out: list[Item], seed: int) -> list[Item]:
    """Fresh sums and word lists for more lessons; none is a held-out prompt's sum or list."""
    rng = random.Random(f"tool-practice-{seed}")
    held_sums = {operands(i) for i in held_out if i.task == "arithmetic"}
    held_lists = {i.input for i in held_out if i.task == "sort_words"}
    sums = [
        item
        for _ in range(PRACTICE_ROUNDS)
        for item in tasks.arithmetic_items((tasks.MAX_OPERAND + 1) ** 2, rng)
        if operands(item) not in held_sums
    ]
    sorts = [i for i in tasks.sort_items(PRACTICE_SORTS + len(held_lists), rng) if i.input not in held_lists]
    return sums + sorts[:PRACTICE_SORTS]


def sft_rows(items: list[Item], plain_rows: list[dict], practice: list[Item], seed: int) -> list[dict]:
    """The SFT-train set with its sums and sorts taught through the tools, the other rows as
    they are (an alpaca row as the user and assistant messages align makes of it), and the
    practice lessons, shuffled in."""
    rows, tools = [], schemas()
    for item, plain in zip(items, plain_rows, strict=True):
        if item.task in TOOL_TASKS:
            rows.append({"messages": lesson(item), "tools": tools, "task": item.task})
        else:
            user = render_prompt(plain["instruction"], plain["input"])
            messages = [{"role": "user", "content": user}, {"role": "assistant", "content": plain["output"]}]
            rows.append({"messages": messages, "task": item.task})
    rows += [{"messages": lesson(item), "tools": tools, "task": item.task} for item in practice]
    random.Random(f"tool-lessons-{seed}").shuffle(rows)
    return rows


def prompt_rows(items: list[Item]) -> list[dict]:
    return [{"prompt": i.prompt, "reference": i.reference, "task": i.task} for i in items if i.task in TOOL_TASKS]
