"""Training prompts for verifiable rewards that are not the test sets they are measured on.

    ifeval-train  an Alpaca instruction (`data:alpaca_en`) with one to three verifiable
                  instructions of IFEval's kinds added, worded and parameterised by IFEval's own
                  instruction classes (lm-eval's copy) and never two that conflict (the
                  harness's conflict table): rows in IFEval's shape {id, prompt,
                  instruction_id_list, kwargs} plus the task alone, for `rule: ifeval`. A task
                  sharing an 8-word sequence with any of IFEval's 541 prompts is not used.
    math-train    the MATH problems (`data:math`, 5,000) without the 500 of MATH-500, each asked
                  for a boxed final answer: {id, prompt, answer, solution, subject, level}, for
                  `rule: math_answer`. GSM8K stays evaluation only.

Seeded: the same seed writes the same rows.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from typing import Any

OVERLAP_WORDS = 8
"""Word n-gram length of the disjointness check (the GPT-3 paper's contamination check used 13)."""

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
REPEAT = "combination:repeat_prompt"


def word_ngrams(text: str, n: int = OVERLAP_WORDS) -> set[tuple[str, ...]]:
    """Lower-cased word n-grams of `text` (punctuation ignored)."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def shared_ngrams(texts: Iterable[str], against: Iterable[str], n: int = OVERLAP_WORDS) -> int:
    """How many of `texts` share at least one word n-gram with any of `against`."""
    seen = set().union(*(word_ngrams(t, n) for t in against))
    return sum(1 for t in texts if word_ngrams(t, n) & seen)


def _instructions():
    """lm-eval's IFEval instruction classes and their conflict table (loaded as the checker loads them)."""
    from align.benchmarks.ifeval import _harness

    _harness()
    from lm_eval.tasks.ifeval import instructions_registry

    return instructions_registry.INSTRUCTION_DICT, instructions_registry.INSTRUCTION_CONFLICTS


def _conflict(a: str, b: str, conflicts: dict[str, set[str]]) -> bool:
    return a == b or a in conflicts.get(b, ()) or b in conflicts.get(a, ())


def _task_text(row: dict[str, Any]) -> str:
    extra = (row.get("input") or "").strip()
    return row["instruction"].strip() + (f"\n\n{extra}" if extra else "")


def ifeval_train(
    tasks: list[dict[str, Any]], test_prompts: list[str], count: int, seed: int = 0, most: int = 3
) -> list[dict[str, Any]]:
    """`count` rows: a task (Alpaca row) with 1..`most` compatible verifiable instructions."""
    classes, conflicts = _instructions()
    test = set().union(*(word_ngrams(t) for t in test_prompts))
    usable = [text for text in map(_task_text, tasks) if not word_ngrams(text) & test]
    if not usable:
        raise ValueError("every task shares an 8-word sequence with IFEval's prompts")
    rng = random.Random(seed)
    kinds = sorted(classes)
    state = random.getstate()  # the instruction classes draw their parameters from `random`
    rows = []
    try:
        random.seed(seed)
        for index in range(count):
            task = usable[index % len(usable)] if index < len(usable) else rng.choice(usable)
            chosen: list[str] = []
            for _ in range(rng.randint(1, most)):
                allowed = [k for k in kinds if not any(_conflict(k, c, conflicts) for c in chosen)]
                if allowed:
                    chosen.append(rng.choice(allowed))
            chosen.sort(key=lambda k: k == REPEAT)  # "repeat the request" goes last: it repeats what precedes
            descriptions, kwargs = [], []
            for kind in chosen:
                instruction = classes[kind](kind)
                if kind == REPEAT:
                    request = " ".join([task, *descriptions])
                    descriptions.append(instruction.build_description(prompt_to_repeat=request))
                else:
                    descriptions.append(instruction.build_description())
                kwargs.append({k: v for k, v in (instruction.get_instruction_args() or {}).items() if v is not None})
            rows.append(
                {
                    "id": f"ifeval-train-{index}",
                    "task": task,
                    "prompt": " ".join([task, *descriptions]),
                    "instruction_id_list": chosen,
                    "kwargs": kwargs,
                }
            )
    finally:
        random.setstate(state)
    return rows


def math_train(problems: list[dict[str, Any]], held_out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MATH problems not in `held_out` (MATH-500), each asking for a boxed answer."""
    test = {" ".join(row["question"].split()) for row in held_out}
    return [
        {
            "id": row["id"],
            "prompt": f"{row['question'].strip()}\n\n{MATH_INSTRUCTION}",
            "answer": row["answer"],
            "solution": row.get("solution", ""),
            "subject": row.get("subject", ""),
            "level": row.get("level", ""),
        }
        for row in problems
        if " ".join(row["question"].split()) not in test
    ]
