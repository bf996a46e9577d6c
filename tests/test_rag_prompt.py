"""The prompt template places passages and question as configured; QA files are validated."""

from __future__ import annotations

import pytest

from align.config.common import Section
from align.config.loader import validate
from align.config.rag import PromptConfig
from align.errors import AlignInputError
from align.rag.prompt import build_prompt
from align.rag.qa import load_qa
from align.retrieval.chunking import Chunk
from align.retrieval.index import Hit


class _Holder(Section):
    prompt: PromptConfig


HITS = [Hit(Chunk("a#0", "a", "Zorbin likes blue."), 2.0, 1), Hit(Chunk("b#3", "b", "Kelbo likes {red}."), 1.0, 2)]


def test_default_template_puts_passages_before_the_question():
    prompt = build_prompt("What does Zorbin like?", HITS, PromptConfig())
    assert prompt == (
        "Answer the question using the passages.\n\n"
        "[1] Zorbin likes blue.\n[2] Kelbo likes {red}.\n\n"
        "Question: What does Zorbin like?"
    )


def test_custom_template_places_each_part_where_asked():
    config = PromptConfig(
        template="Q: {question}\nSources:\n{passages}\nA:",
        passage_template="<{doc_id} {chunk_id}> {text}",
        passage_separator=" | ",
    )
    prompt = build_prompt("Who likes {question}?", HITS, config)  # braces in values stay literal
    assert prompt == "Q: Who likes {question}?\nSources:\n<a a#0> Zorbin likes blue. | <b b#3> Kelbo likes {red}.\nA:"
    assert (
        build_prompt("Q?", None, PromptConfig(plain_template="Question: {question}\nAnswer:"))
        == "Question: Q?\nAnswer:"
    )
    assert build_prompt("Q?", [], config) == "Q: Q?\nSources:\n\nA:"  # retrieval found nothing


def test_templates_without_placeholders_are_rejected():
    with pytest.raises(AlignInputError, match=r"prompt.template.*\{passages\}"):
        validate(_Holder, {"prompt": {"template": "{question} only"}}, "cfg.yaml")
    with pytest.raises(AlignInputError, match=r"plain_template"):
        validate(_Holder, {"prompt": {"plain_template": "no question"}}, "cfg.yaml")


def test_qa_rows_need_an_answer(tmp_path):
    good = tmp_path / "qa.jsonl"
    good.write_text('{"question": "Q1?", "answer": "a"}\n{"question": "Q2?", "answers": ["b", 7], "doc_id": "d"}\n')
    items = load_qa(good)
    assert [(i.question, i.answers, i.doc_ids) for i in items] == [("Q1?", ("a",), ()), ("Q2?", ("b", "7"), ("d",))]
    assert len(load_qa(good, limit=1)) == 1
    for body in ('{"question": "Q?"}', '{"question": "Q?", "answers": []}', '{"question": "Q?", "answer": ""}'):
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"question": "ok?", "answer": "x"}\n' + body + "\n")
        with pytest.raises(AlignInputError, match=r"bad\.jsonl: record 2 has no answer"):
            load_qa(bad)
    with pytest.raises(AlignInputError, match="no 'question'"):
        bad.write_text('{"q": "Q?", "answer": "x"}\n')
        load_qa(bad)
