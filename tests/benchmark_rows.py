"""Hand-written rows in align's benchmark row shapes, and a cache holding them (no benchmark text)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from align.data import catalog

ARC_ROWS = [
    {"id": f"a{i}", "contexts": [f"Question: what colour is item {i}?\nAnswer:"] * 3,
     "continuations": [" red", " green", " a very long blue"], "gold": i % 3, "fewshot": ""}
    for i in range(5)
]  # fmt: skip
WINOGRANDE_ROWS = [
    {"id": f"w{i}", "contexts": [f"Ann beat Bo {i} times so Ann", f"Ann beat Bo {i} times so Bo"],
     "continuations": [" was happy."] * 2, "gold": i % 2, "fewshot": ""}
    for i in range(4)
]  # fmt: skip
LONG_SHOTS = "Question: a long worked example?\nAnswer: yes\n\n" * 80  # ~1,000 tokens: beyond a 512 context
GSM_ROWS = [{"id": str(i), "question": f"What is {i} + {i}?", "answer": str(2 * i), "solution": ""} for i in range(3)]
GSM_SHOTS = [{"question": "What is 1 + 1?", "solution": "1 + 1 = 2. So the answer is 2."}] * 3
MATH_ROWS = [{"id": f"m{i}", "question": f"Compute ${i}+1$.", "answer": str(i + 1), "solution": ""} for i in range(2)]
MATH_SHOTS = [{"question": "Compute $1+1$.", "solution": "$1+1=\\boxed{2}$."}]
IFEVAL_ROWS = [
    {"id": "1", "prompt": "Answer in lowercase.", "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]},
    {"id": "2", "prompt": "No commas.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
]  # fmt: skip
WIKI_ROWS = [{"id": "0", "text": "The cat sat on the mat."}, {"id": "1", "text": "A dog ran to the park and back."}]


@contextmanager
def benchmark_cache(folder: Path):
    """$ALIGN_CACHE pointed at `folder` (restored after), holding the rows above as cached sets."""
    old = os.environ.get("ALIGN_CACHE")
    os.environ["ALIGN_CACHE"] = str(folder)
    try:
        catalog.write_rows(catalog.lookup("arc_easy"), ARC_ROWS, [])
        catalog.write_rows(catalog.lookup("arc_challenge"), [{**r, "fewshot": LONG_SHOTS} for r in ARC_ROWS], [])
        catalog.write_rows(catalog.lookup("winogrande"), WINOGRANDE_ROWS, [])
        catalog.write_rows(catalog.lookup("gsm8k"), GSM_ROWS, GSM_SHOTS)
        catalog.write_rows(catalog.lookup("math500"), MATH_ROWS, MATH_SHOTS)
        catalog.write_rows(catalog.lookup("ifeval"), IFEVAL_ROWS, [])
        catalog.write_rows(catalog.lookup("wikipedia"), WIKI_ROWS, [])
        yield folder
    finally:
        if old is None:
            os.environ.pop("ALIGN_CACHE")
        else:
            os.environ["ALIGN_CACHE"] = old
