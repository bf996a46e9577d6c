"""`align eval`: several systems (base, base+RAG, SFT, SFT+RAG, PPO, ...) on the same QA sets
and public benchmarks.

1. load the QA sets and the benchmarks' data (pulled once into the cache); 2. open (or build)
the retrieval index and retrieve once per QA set, if any system retrieves; 3. per system: load
the model, answer every set, score, run every benchmark (systems without retrieval); 4. write
eval.json, predictions/, report.md with one bar chart per QA set and the benchmark table.
"""

from __future__ import annotations

import gc
from pathlib import Path

from align.benchmarks.report import systems_table
from align.benchmarks.run import run_benchmark
from align.benchmarks.tasks import lookup as lookup_benchmark
from align.config.common import ModelConfig
from align.config.loader import to_yaml
from align.config.rag import EvalConfig, SystemConfig
from align.data import catalog as data_catalog
from align.distributed import is_main_process
from align.errors import AlignInputError
from align.models import model_problem
from align.precision import runs_in_precision
from align.rag.answer import Answer, answer_all, open_index, retrieve
from align.rag.generate import Generator
from align.rag.qa import QAItem, load_qa
from align.rag.report import eval_report
from align.rag.scoring import answer_scores, mean_scores, resolve_relevance, retrieval_scores, system_figures
from align.retrieval.corpus import Document, load_corpus
from align.rundir import RunDir, RunResult, atomic_write_jsonl

N_SAMPLES = 5


@runs_in_precision
def run(config: EvalConfig) -> RunResult:
    # 1. QA sets, corpus and every model path are checked before anything is written or loaded
    parts = {name: load_qa(path, config.max_questions) for name, path in config.qa.items()}
    if config.benchmarks:
        data_catalog.pull(list(dict.fromkeys(lookup_benchmark(b.name).data for b in config.benchmarks)))
    systems, skipped = check_systems(config.systems)
    docs = load_corpus(config.retrieval.corpus) if any(s.rag for s in systems.values()) else None
    run_dir = RunDir.create(config.output.output_dir, "eval", config.output.overwrite, config.output.resume)
    run_dir.write_config(to_yaml(config))
    data_files = list(config.qa.values()) + ([config.retrieval.corpus] if config.retrieval else [])
    run_dir.write_env(data_files)
    # 2. retrieval, once per QA set, shared by every RAG system
    results: dict = {"parts": {p: {} for p in parts}, "retrieval": None, "skipped": skipped}
    results["benchmarks"] = {b.name: {} for b in config.benchmarks}
    hits, retrieval_figures, retrieval_seconds = {}, {}, {}
    if any(s.rag for s in systems.values()):
        hits, retrieval_figures, retrieval_seconds, results["retrieval"] = retrieve_all(
            config, docs, parts, run_dir.path
        )
    # 3. every system on every set (systems sharing a model, like base and base+rag, share one load)
    logger = run_dir.metrics(config)
    samples: dict[str, dict[str, list[dict]]] = {p: {} for p in parts}
    generator = None
    for step, (name, system) in enumerate(systems.items()):
        chat = config.prompt.chat if system.chat is None else system.chat
        if generator is None or generator.name_or_path != system.model:
            generator = None
            gc.collect()
            generator = Generator(ModelConfig(name_or_path=system.model, dtype=config.dtype), config.generation, chat)
        generator.chat = chat
        for part, items in parts.items():
            rag = (hits[part], retrieval_seconds[part], retrieval_figures[part]) if system.rag else None
            figures, answers = evaluate_system(generator, items, rag, config, desc=f"{name} on {part}")
            results["parts"][part][name] = figures
            samples[part][name] = [
                {"question": a.question, "answers": " / ".join(i.answers), "prediction": a.answer}
                for a, i in zip(answers[:N_SAMPLES], items)
            ]
            write_predictions(run_dir.path / "predictions" / f"{name}.{part}.jsonl", items, answers)
            logger.log(step, {f"{part}/{name}/{k}": v for k, v in figures.items()})
        if not system.rag:  # benchmarks do not retrieve: a RAG system would repeat its model's figures
            for spec in config.benchmarks:
                if spec.chat is None and system.chat is not None:
                    spec = spec.model_copy(update={"chat": system.chat})
                result = run_benchmark(
                    generator.model,
                    generator.tokenizer,
                    spec,
                    config.limit,
                    config.seed,
                    config.scoring_batch_size
                    if lookup_benchmark(spec.name).kind != "generate"
                    else config.generation.batch_size,
                )
                results["benchmarks"][spec.name][name] = result.summary()
                write_jsonl(run_dir.path / "predictions" / f"{name}.{spec.name}.jsonl", result.records)
                logger.log(step, {f"{spec.name}/{name}/{k}": f["value"] for k, f in result.metrics.items()})
    del generator
    logger.close()
    # 4. eval.json + report.md
    results["benchmark_table"] = systems_table(results["benchmarks"])
    eval_path = run_dir.write_json("eval.json", results)
    if is_main_process():
        run_dir.write_text("report.md", eval_report(results, samples, run_dir.path, "align eval"))
    headline = {
        f"{part}/{name}/{m}": figures[m]
        for part, by_system in results["parts"].items()
        for name, figures in by_system.items()
        for m in ("contains", "token_f1", "recall_at_k")
        if m in figures
    }
    headline |= {
        f"{bench}/{name}/{result['headline']}": result["metrics"][result["headline"]]["value"]
        for bench, by_system in results["benchmarks"].items()
        for name, result in by_system.items()
        if not result.get("refused")
    }
    return RunResult(run_dir.path, headline, {"eval.json": eval_path, "report.md": run_dir.path / "report.md"})


def evaluate_system(generator: Generator, items: list[QAItem], rag: tuple | None, config: EvalConfig, desc: str):
    """Figures and answers of one system on one QA set; rag = (hits, retrieval seconds/question, retrieval figures)."""
    hits, seconds, retrieval_figures = rag if rag is not None else (None, 0.0, {})
    answers = answer_all(generator, [i.question for i in items], hits, config.prompt, seconds, progress=True, desc=desc)
    return {**system_figures(items, answers), **retrieval_figures}, answers


def check_systems(systems: dict[str, SystemConfig]) -> tuple[dict[str, SystemConfig], list[str]]:
    """Systems whose model can be found; a missing one is an error unless marked optional."""
    present, skipped = {}, []
    for name, system in systems.items():
        problem = model_problem(system.model)
        if problem is None:
            present[name] = system
        elif system.optional:
            skipped.append(f"{name}: {problem}")
        else:
            raise AlignInputError(f"eval system '{name}': {problem} (or mark it `optional: true` to skip it)")
    if not present:
        raise AlignInputError("no eval system has a model to load: " + "; ".join(skipped))
    return present, skipped


def retrieve_all(config: EvalConfig, docs: list[Document], parts: dict[str, list[QAItem]], run_path: Path):
    """Hits, retrieval figures and seconds per question for every QA set, plus the retrieval summary."""
    index, info = open_index(config.retrieval, run_path / "index", docs=docs)
    hits, figures, seconds = {}, {}, {}
    for part, items in parts.items():
        hits[part], seconds[part] = retrieve(index, [i.question for i in items], config.retrieval)
        relevance = resolve_relevance(config.retrieval.relevance, items)
        figures[part] = mean_scores(retrieval_scores(h, i, relevance) for h, i in zip(hits[part], items))
    summary = {
        "retriever": config.retrieval.retriever,
        "top_k": config.retrieval.top_k,
        "relevance": {p: resolve_relevance(config.retrieval.relevance, items) for p, items in parts.items()},
        "index": info,
    }
    summary["relevance"] = ", ".join(f"{p}: {r}" for p, r in summary["relevance"].items())
    return hits, figures, seconds, summary


def write_predictions(path: Path, items: list[QAItem], answers: list[Answer]) -> None:
    rows = [
        {
            "question": item.question,
            "answers": list(item.answers),
            "prediction": answer.answer,
            **answer_scores(answer.answer, item.answers),
            "sources": answer.sources,
            "seconds": round(answer.seconds, 5),
        }
        for item, answer in zip(items, answers)
    ]
    write_jsonl(path, rows)


def write_jsonl(path: Path, records: list[dict]) -> None:
    """predictions/ files, written by the main process only."""
    if is_main_process():
        atomic_write_jsonl(path, records)
