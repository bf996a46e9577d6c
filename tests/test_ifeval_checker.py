"""IFEval's checker on hand-written responses: for every instruction type the 541 prompts use, one
response that follows it and one that does not, under the strict reading; the loose reading
forgives markdown asterisks and a first or last line; prompt- and instruction-level figures by hand."""

from __future__ import annotations

import pytest

from align.benchmarks import ifeval

PARAGRAPHS = "Weekend plans are simple.\n\n***\n\nWe rest.\n\n***\n\nWe read.\n\n***\n\nWe cook."  # split by ***
BLANK_LINE_PARAGRAPHS = "Weekend plans are simple.\n\nWe rest.\n\nWe read.\n\nWe cook."  # split by blank lines
WORDS_310 = " ".join(["word"] * 310)

CASES = {
    "change_case:capital_word_frequency": (
        {"capital_relation": "at least", "capital_frequency": 2}, "THIS is VERY loud.", "This is quiet.",
    ),
    "change_case:english_capital": ({}, "THIS IS ALL IN CAPITAL LETTERS IN ENGLISH.", "This is not all in capitals."),
    "change_case:english_lowercase": ({}, "this is all lowercase english text.", "This Has Capitals in it."),
    "combination:repeat_prompt": (
        {"prompt_to_repeat": "Write a poem about rain."},
        "Write a poem about rain. Rain falls on the roof.", "Rain falls on the roof.",
    ),
    "combination:two_responses": ({}, "First answer here.\n******\nSecond answer here.", "Only one answer."),
    "detectable_content:number_placeholders": ({"num_placeholders": 2}, "Dear [name], meet at [place].", "Dear [name]."),
    "detectable_content:postscript": ({"postscript_marker": "P.S."}, "Hello.\n\nP.S. See you soon.", "Hello, see you."),
    "detectable_format:constrained_response": ({}, "My answer is yes.", "Perhaps, I am not sure."),
    "detectable_format:json_format": ({}, '```json\n{"name": "Ada", "age": 36}\n```', "name: Ada, age 36"),
    "detectable_format:multiple_sections": (
        {"section_spliter": "Section", "num_sections": 2},
        "Section 1\nIntro text.\nSection 2\nMore text.", "Just one block of text.",
    ),
    "detectable_format:number_bullet_lists": ({"num_bullets": 2}, "* apples\n* pears", "* apples\n* pears\n* plums"),
    "detectable_format:number_highlighted_sections": (
        {"num_highlights": 2}, "Here is *part one* and *part two*.", "Here is *part one* only.",
    ),
    "detectable_format:title": ({}, "<<A Rainy Day>>\nIt rained.", "A Rainy Day\nIt rained."),
    "keywords:existence": ({"keywords": ["correlated", "experiencing"]}, "We are experiencing correlated events.", "We see events."),
    "keywords:forbidden_words": ({"forbidden_words": ["rock"]}, "Music with a guitar.", "I love rock music."),
    "keywords:frequency": (
        {"relation": "at least", "keyword": "story", "frequency": 2}, "A story within a story.", "A story.",
    ),
    "keywords:letter_frequency": ({"let_relation": "at least", "letter": "z", "let_frequency": 3}, "Zoe zips to the zoo.", "Hello there."),
    "language:response_language": (
        {"language": "de"},
        "Das ist ein kurzer Satz auf Deutsch, und er handelt vom Wetter in der Stadt.",
        "This is a short sentence in English about the weather in the city.",
    ),
    "length_constraints:nth_paragraph_first_word": (
        {"first_word": "weekend", "num_paragraphs": 4, "nth_paragraph": 1},
        BLANK_LINE_PARAGRAPHS, BLANK_LINE_PARAGRAPHS.replace("Weekend", "Our"),
    ),
    "length_constraints:number_paragraphs": ({"num_paragraphs": 4}, PARAGRAPHS, "One paragraph only."),
    "length_constraints:number_sentences": (
        {"relation": "less than", "num_sentences": 3}, "One sentence. Two sentences.", "One. Two. Three. Four.",
    ),
    "length_constraints:number_words": ({"relation": "at least", "num_words": 300}, WORDS_310, "Too short."),
    "punctuation:no_comma": ({}, "No commas here at all.", "Commas, here."),
    "startend:end_checker": ({"end_phrase": "Any other questions?"}, "That is all. Any other questions?", "Any other questions? That is all."),
    "startend:quotation": ({}, '"Wrapped in double quotes."', "Not wrapped."),
}  # fmt: skip


def row(instruction: str, kwargs: dict, prompt: str = "Write something.") -> dict:
    return {"id": "1", "prompt": prompt, "instruction_id_list": [instruction], "kwargs": [kwargs]}


def test_every_instruction_type_of_the_prompts_is_covered():
    assert sorted(CASES) == ifeval.instruction_ids()  # the 25 types lm-eval's checker registers


@pytest.mark.parametrize("instruction", sorted(CASES))
def test_followed_and_not_followed(instruction):
    kwargs, good, bad = CASES[instruction]
    prompt = kwargs.get("prompt_to_repeat", "Write something.")
    assert ifeval.check(row(instruction, kwargs, prompt), good)["strict"] == [True], good
    assert ifeval.check(row(instruction, kwargs, prompt), bad)["strict"] == [False], bad


def test_loose_reading_forgives_markdown_and_a_first_line():
    checked = ifeval.check(row("startend:quotation", {}), 'Sure! Here it is:\n"Wrapped in quotes."')
    assert checked == {"strict": [False], "loose": [True]}
    checked = ifeval.check(row("detectable_format:title", {}), "**<<Title>>** text")
    assert checked["strict"] == [True]


def test_prompt_and_instruction_level_figures_by_hand():
    checks = [{"strict": [True, False], "loose": [True, True]}, {"strict": [True], "loose": [True]}]
    figures = ifeval.ifeval_figures(checks)
    assert figures["prompt_level_strict"][0] == 0.5 and figures["inst_level_strict"][0] == pytest.approx(2 / 3)
    assert figures["prompt_level_loose"][0] == 1.0 and figures["inst_level_loose"][2] == 3


def test_protocol_says_which_sentence_counter_ran():
    assert ifeval.checker_protocol().startswith("lm-eval 0.4.13 IFEval checker")


def test_reading_the_instruction_ids_first_never_tries_to_download_punkt():
    """A fresh process whose first IFEval call is the id list (the ifeval rule's row check): no
    download attempt (lm-eval's module tries one on import unless align's loader goes first)."""
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "from align.benchmarks.ifeval import instruction_ids; print(len(instruction_ids()))"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "25"
    assert "nltk_data" not in done.stderr + done.stdout and "punkt" not in done.stderr + done.stdout
