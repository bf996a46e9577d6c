"""`align rag run`: index a corpus (or extend a saved index), then answer and score a QA set.

1. open or build the index; 2. retrieve for every question and score the retrieval;
3. with a model, answer from the passages and score the answers; 4. answers.jsonl,
eval.json, report.md.
"""

from __future__ import annotations

import json

from align.config.loader import to_yaml
from align.config.rag import RAGConfig
from align.distributed import is_main_process
from align.precision import runs_in_precision
from align.rag.answer import answer_all, open_index, retrieve, source_of
from align.rag.generate import Generator
from align.rag.qa import load_qa
from align.rag.report import eval_report
from align.rag.scoring import answer_scores, mean_scores, resolve_relevance, retrieval_scores, system_figures
from align.retrieval.corpus import load_corpus
from align.rundir import RunDir, RunResult


@runs_in_precision
def run(config: RAGConfig) -> RunResult:
    # 1. inputs are checked before anything is written; then the index
    docs = load_corpus(config.corpus)
    items = load_qa(config.questions, config.max_questions) if config.questions else []
    run_dir = RunDir.create(config.output.output_dir, "rag", config.output.overwrite, config.output.resume)
    run_dir.write_config(to_yaml(config))
    run_dir.write_env([config.corpus] + ([config.questions] if config.questions else []))
    index, info = open_index(config, run_dir.path / "index", docs=docs)
    metrics: dict = {"documents": info["documents"], "chunks": info["chunks"], "index_seconds": info["seconds"]}
    artifacts = {"index": info["index_dir"]}
    if config.questions is None:
        run_dir.write_json("eval.json", {"index": info})
        return RunResult(run_dir.path, metrics, artifacts)
    # 2. retrieval
    hits, retrieval_seconds = retrieve(index, [i.question for i in items], config)
    relevance = resolve_relevance(config.relevance, items)
    figures = mean_scores(retrieval_scores(h, i, relevance) for h, i in zip(hits, items))
    figures["retrieval_latency_s"] = retrieval_seconds
    rows = [
        {"question": i.question, "answers": list(i.answers), "sources": [source_of(x) for x in h]}
        for i, h in zip(items, hits)
    ]
    # 3. generation
    samples = {}
    if config.model is not None:
        generator = Generator(config.model, config.generation, config.prompt.chat)
        answers = answer_all(
            generator, [i.question for i in items], hits, config.prompt, retrieval_seconds, progress=True
        )
        figures.update(system_figures(items, answers))
        for row, answer in zip(rows, answers):
            row.update(
                prediction=answer.answer,
                seconds=round(answer.seconds, 5),
                **answer_scores(answer.answer, row["answers"]),
            )
        samples = {
            "rag": [
                {"question": r["question"], "answers": " / ".join(r["answers"]), "prediction": r["prediction"]}
                for r in rows[:5]
            ]
        }
    # 4. files
    if is_main_process():
        with (run_dir.path / "answers.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    retrieval = {"retriever": config.retriever, "top_k": config.top_k, "relevance": relevance, "index": info}
    results = {"parts": {"questions": {"rag": figures}}, "retrieval": retrieval, "skipped": []}
    eval_path = run_dir.write_json("eval.json", results)
    if is_main_process():
        run_dir.write_text("report.md", eval_report(results, {"questions": samples}, run_dir.path, "align rag run"))
    metrics.update({k: v for k, v in figures.items() if isinstance(v, float)})
    artifacts.update({"answers.jsonl": run_dir.path / "answers.jsonl", "eval.json": eval_path})
    return RunResult(run_dir.path, metrics, artifacts)
