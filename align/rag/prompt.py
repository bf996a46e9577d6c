"""Turn a question (and retrieved passages) into the text a model is asked.

Placeholders are replaced literally (not str.format), so braces inside passages or questions
are safe.
"""

from __future__ import annotations

import re
from typing import Sequence

from align.config.rag import PromptConfig
from align.retrieval.index import Hit


def format_passage(hit: Hit, config: PromptConfig) -> str:
    return _fill(
        config.passage_template, rank=str(hit.rank), text=hit.chunk.text, doc_id=hit.chunk.doc_id, chunk_id=hit.chunk.id
    )


def build_prompt(question: str, hits: Sequence[Hit] | None, config: PromptConfig) -> str:
    """The user message: `template` with passages when `hits` is given (even empty), else `plain_template`."""
    if hits is None:
        return _fill(config.plain_template, question=question)
    passages = config.passage_separator.join(format_passage(h, config) for h in hits)
    return _fill(config.template, passages=passages, question=question)


def _fill(template: str, **values: str) -> str:
    """Replace each {name} in one pass, so a value that itself contains '{question}' is left alone."""
    pattern = re.compile("|".join(re.escape("{" + name + "}") for name in values))
    return pattern.sub(lambda m: values[m.group(0)[1:-1]], template)
