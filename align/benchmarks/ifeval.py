"""IFEval's checker: lm-evaluation-harness's reference implementation of the 25 instruction types,
with one documented fallback where NLTK's punkt data is missing (no package here ships it).

Punkt is used by two checks only: `length_constraints:number_sentences` (sentence count) and
`change_case:capital_word_frequency` (word tokens). Without it the sentence count uses the
harness's own rule-based splitter (`split_into_sentences`, the one it uses for other checks)
and words come from NLTK's Treebank tokenizer on the whole text (punkt only split sentences
first). `checker_protocol()` says which was used; it is written into eval.json.
"""

from __future__ import annotations

import contextlib
import functools
import io
from typing import Any


class _NltkWithoutPunkt:
    """The nltk module as the checker sees it, with word_tokenize not splitting sentences first."""

    def __init__(self, nltk):
        self._nltk = nltk

    def __getattr__(self, name: str):
        return getattr(self._nltk, name)

    def word_tokenize(self, text: str, language: str = "english", preserve_line: bool = False):
        return self._nltk.word_tokenize(text, language, preserve_line=True)


@functools.lru_cache(maxsize=1)
def _harness() -> tuple[Any, str]:
    """lm-eval's IFEval module, imported without its attempt to download punkt; and the protocol line."""
    import langdetect
    import nltk

    langdetect.DetectorFactory.seed = 0  # langdetect samples; a seed makes the language checks repeatable
    download = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from lm_eval.tasks.ifeval import instructions_util, utils
    finally:
        nltk.download = download
    fallbacks = []
    try:
        instructions_util.count_sentences("One. Two.")
    except (LookupError, OSError, ValueError):
        instructions_util.count_sentences = lambda text: len(instructions_util.split_into_sentences(text))
        fallbacks.append("sentences counted by the harness's rule-based splitter")
    try:
        nltk.word_tokenize("One. Two.")
    except (LookupError, OSError):
        instructions_util.nltk = _NltkWithoutPunkt(nltk)
        fallbacks.append("words by the Treebank tokenizer without sentence splitting")
    protocol = "lm-eval 0.4.13 IFEval checker" + (
        f" (NLTK punkt missing: {'; '.join(fallbacks)})" if fallbacks else " (with NLTK punkt)"
    )
    return utils, protocol


def checker_protocol() -> str:
    return _harness()[1]


def instruction_ids() -> list[str]:
    _harness()  # first: importing lm-eval's IFEval modules otherwise tries to download punkt
    from lm_eval.tasks.ifeval import instructions_registry

    return sorted(instructions_registry.INSTRUCTION_DICT)


def check(row: dict[str, Any], response: str) -> dict[str, list[bool]]:
    """Per instruction of one IFEval row: followed under the strict and the loose reading."""
    utils, _ = _harness()
    example = utils.InputExample(
        key=row.get("id", ""),
        instruction_id_list=row["instruction_id_list"],
        prompt=row.get("prompt", ""),
        kwargs=row["kwargs"],
    )
    strict = utils.test_instruction_following_strict(example, response)
    loose = utils.test_instruction_following_loose(example, response)
    return {"strict": list(strict.follow_instruction_list), "loose": list(loose.follow_instruction_list)}


def ifeval_figures(checks: list[dict[str, list[bool]]]) -> dict[str, tuple[float, float, int]]:
    """Prompt- and instruction-level accuracy, strict and loose: name -> (value, stderr, n)."""
    from align.benchmarks.stats import mean_stderr

    figures = {}
    for reading in ("strict", "loose"):
        prompts = [float(all(c[reading])) for c in checks]
        instructions = [float(x) for c in checks for x in c[reading]]
        figures[f"prompt_level_{reading}"] = (*mean_stderr(prompts), len(prompts))
        figures[f"inst_level_{reading}"] = (*mean_stderr(instructions), len(instructions))
    return figures
