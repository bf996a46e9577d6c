"""The files public benchmark and training sets ship as, read into align's row shapes.

Each reader takes the raw bytes of the files a catalog entry names (align.data.catalog) and
returns (rows, few-shot examples). The row shapes, one per kind (docs/design.md):

    multiple_choice  {id, contexts: [str per choice], continuations: [str per choice], gold, fewshot: str}
    math             {id, question, answer, solution, subject?, level?}      few-shot: {question, solution}
    instructions     {id, prompt, instruction_id_list, kwargs}                (IFEval)
    text             {id, text}                                               (LAMBADA adds context, target)
    sft              {instruction, input, output}                              (alpaca)
    preference       {prompt: [messages], chosen: [message], rejected: [message]}
    kto              {prompt: [messages], completion: [message], label}
    prompts          {id, prompt, reference?, category?, turns?}

Multiple-choice, GSM8K and MATH files come from OLMo's evaluation suite, one JSON request per
line ({doc, request: {context, continuation}, doc_id}); requests with doc_id >= 1,000,000 are
its "unconditional" duplicates and are skipped.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from typing import Any, Callable

Rows = list[dict[str, Any]]
UNCONDITIONAL_OFFSET = 1_000_000


def _lines(data: bytes) -> list[dict[str, Any]]:
    text = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8")
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def _requests_by_doc(data: bytes) -> dict[int, list[dict[str, Any]]]:
    docs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for request in _lines(data):
        if request["doc_id"] < UNCONDITIONAL_OFFSET:
            docs[request["doc_id"]].append(request)
    return dict(sorted(docs.items()))


def multiple_choice(files: list[bytes]) -> tuple[Rows, Rows]:
    """OLMo's ranked-classification requests (one per choice, the few-shot prefix in each context)
    -> one row per question; `contexts` are 0-shot, `fewshot` the prefix the file's shots used."""
    rows = []
    for doc_id, requests in _requests_by_doc(files[0]).items():
        requests.sort(key=lambda r: r["idx"])
        full = [r["request"]["context"] for r in requests]
        query = requests[0]["doc"].get("query")
        if query is not None and all(c.endswith(query) for c in full):
            zero_shot = [query] * len(full)
        else:  # per-choice contexts (Winogrande): the last paragraph is the question itself
            zero_shot = [c.rsplit("\n\n", 1)[-1] for c in full]
        prefix = full[0][: len(full[0]) - len(zero_shot[0])]
        doc = requests[0]["doc"]
        gold = requests[0]["label"] if "label" in requests[0] else doc["gold"]
        rows.append(
            {
                "id": str(requests[0].get("native_id") if requests[0].get("native_id") is not None else doc_id),
                "contexts": zero_shot,
                "continuations": [r["request"]["continuation"] for r in requests],
                "gold": int(gold),
                "fewshot": prefix,
            }
        )
    return rows, []


_GSM8K_SHOT = re.compile(r"Question: (.*?)\nAnswer: (.*?)(?=\n\nQuestion: |\Z)", re.S)
_MATH_SHOT = re.compile(r"Problem:\n(.*?)\n\nSolution: (.*?)(?=\n\nProblem:\n|\Z)", re.S)


def gsm8k(files: list[bytes]) -> tuple[Rows, Rows]:
    """GSM8K's test problems; few-shot = the chain-of-thought examples its file was built with."""
    requests = [r[0] for r in _requests_by_doc(files[0]).values()]
    rows = [
        {
            "id": str(r["doc"]["id"]),
            "question": r["doc"]["question"],
            "answer": r["doc"]["short_answer"],
            "solution": r["doc"]["answer"],
        }
        for r in requests
    ]
    shots = [{"question": q, "solution": s} for q, s in _GSM8K_SHOT.findall(requests[0]["request"]["context"]) if s]
    return rows, shots


def math(files: list[bytes]) -> tuple[Rows, Rows]:
    """MATH problems (MATH-500 or the seven subjects); few-shot = Minerva's four examples."""
    rows, shots = [], []
    for data in files:
        for doc_id, requests in _requests_by_doc(data).items():
            doc = requests[0]["doc"]
            subject = doc.get("type") or ""
            rows.append(
                {
                    "id": f"{subject.lower().replace(' ', '_') or 'math'}-{doc.get('index', doc_id)}",
                    "question": doc["problem"],
                    "answer": doc["answer"],
                    "solution": doc["solution"],
                    "subject": subject,
                    "level": doc.get("level"),
                }
            )
            if not shots:
                shots = [
                    {"question": q, "solution": s}
                    for q, s in _MATH_SHOT.findall(requests[0]["request"]["context"])
                    if s
                ]
    return rows, shots


def ifeval(files: list[bytes]) -> tuple[Rows, Rows]:
    rows = [
        {
            "id": str(r["key"]),
            "prompt": r["prompt"],
            "instruction_id_list": r["instruction_id_list"],
            "kwargs": r["kwargs"],
        }
        for r in _lines(files[0])
    ]
    return rows, []


def lambada(files: list[bytes]) -> tuple[Rows, Rows]:
    rows = []
    for requests in _requests_by_doc(files[0]).values():
        context, target = requests[0]["request"]["context"], requests[0]["request"]["continuation"]
        rows.append(
            {"id": str(requests[0]["doc"]["id"]), "text": context + target, "context": context, "target": target}
        )
    return rows, []


def paragraphs(files: list[bytes]) -> tuple[Rows, Rows]:
    """One paragraph per JSON line under key "0" (OpenAI evals' Wikipedia sample)."""
    return [{"id": str(i), "text": row["0"].strip()} for i, row in enumerate(_lines(files[0]))], []


def text_lines(files: list[bytes]) -> tuple[Rows, Rows]:
    lines = [line.strip() for line in files[0].decode("utf-8").splitlines() if line.strip()]
    return [{"id": str(i), "text": line} for i, line in enumerate(lines)], []


def alpaca(files: list[bytes]) -> tuple[Rows, Rows]:
    return [
        {"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}
        for r in json.loads(files[0])
    ], []


def _sharegpt(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    return [{"role": roles.get(t["from"], t["from"]), "content": t["value"]} for t in turns]


def sharegpt_preference(files: list[bytes]) -> tuple[Rows, Rows]:
    rows = [
        {
            "prompt": _sharegpt(r["conversations"]),
            "chosen": _sharegpt([r["chosen"]]),
            "rejected": _sharegpt([r["rejected"]]),
        }
        for r in json.loads(files[0])
    ]
    return rows, []


def kto_messages(files: list[bytes]) -> tuple[Rows, Rows]:
    rows = [
        {"prompt": r["messages"][:-1], "completion": r["messages"][-1:], "label": bool(r["label"])}
        for r in json.loads(files[0])
    ]
    return rows, []


def alpaca_eval(files: list[bytes]) -> tuple[Rows, Rows]:
    rows = [
        {"id": str(i), "prompt": r["instruction"], "reference": r["output"], "category": r.get("dataset", "")}
        for i, r in enumerate(json.loads(files[0]))
    ]
    return rows, []


def arena_hard(files: list[bytes]) -> tuple[Rows, Rows]:
    rows = [{"id": r["uid"], "prompt": r["prompt"], "category": r.get("subcategory", "")} for r in _lines(files[0])]
    return rows, []


def mt_bench(files: list[bytes]) -> tuple[Rows, Rows]:
    rows = [
        {"id": str(r["question_id"]), "prompt": r["turns"][0], "turns": r["turns"], "category": r["category"]}
        for r in _lines(files[0])
    ]
    return rows, []


READERS: dict[str, Callable[[list[bytes]], tuple[Rows, Rows]]] = {
    "multiple_choice": multiple_choice,
    "gsm8k": gsm8k,
    "math": math,
    "ifeval": ifeval,
    "lambada": lambada,
    "paragraphs": paragraphs,
    "text_lines": text_lines,
    "alpaca": alpaca,
    "sharegpt_preference": sharegpt_preference,
    "kto_messages": kto_messages,
    "alpaca_eval": alpaca_eval,
    "arena_hard": arena_hard,
    "mt_bench": mt_bench,
}
