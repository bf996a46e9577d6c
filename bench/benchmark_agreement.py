"""align's benchmark figures against lm-evaluation-harness (lm-eval 0.4.13, the field's reference
implementation) on the same model object, the same items and the same protocol, with each
one's items/s in the same run.

    python bench/benchmark_agreement.py --model models:smollm2 [--limit 200] [--seed 0]
        [--benchmarks arc_easy,arc_challenge,hellaswag,piqa,winogrande,gsm8k,ifeval,wikipedia]
        [--batch-size 8] [--max-new-tokens 256] [--precision fp32|bf16]

lm-eval reads the same cached rows (`align data pull`) through task configs built here:
multiple choice as its ranked classification (Winogrande as its "partial" scoring, the choice in
the context), GSM8K raw text with its few-shot layout, its stops and its flexible-extract
filter, IFEval through its own task functions with the chat template, Wikipedia as rolling
log-likelihood. Both sides run the same loaded model under the same precision (align's autocast
wraps the model's forward, which lm-eval calls too). Prints one row per benchmark and metric:
lm-eval's figure, align's, the difference in points, items/s of each and their ratio. The last
line is the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_BENCHMARKS = "arc_easy,arc_challenge,hellaswag,piqa,winogrande,gsm8k,ifeval,wikipedia"
COMPARED = {  # align metric -> lm-eval metric (filter) for each kind
    "choice": {"acc": "acc,none", "acc_norm": "acc_norm,none"},
    "gsm8k": {"exact_match": "exact_match,flexible-extract"},
    "ifeval": {
        "prompt_level_strict": "prompt_level_strict_acc,none",
        "inst_level_strict": "inst_level_strict_acc,none",
        "prompt_level_loose": "prompt_level_loose_acc,none",
        "inst_level_loose": "inst_level_loose_acc,none",
    },
    "perplexity": {"bits_per_byte": "bits_per_byte,none"},
}


def task_config(benchmark, rows_file: str, max_new_tokens: int, shots: list[dict]) -> dict:
    """An lm-eval task reading align's cached rows (a JSON-lines file) with align's protocol."""
    from align.benchmarks.run import RAW_STOPS, generation_text

    base = {
        "task": f"align_{benchmark.name}",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": rows_file}},
        "test_split": "test",
    }
    if benchmark.kind == "choice":
        return {
            **base,
            "output_type": "multiple_choice",
            "doc_to_text": _choice_text,
            "doc_to_choice": _choice_choices,
            "doc_to_target": _choice_target,
            "target_delimiter": " ",
            "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
        }
    if benchmark.kind == "perplexity":
        return {
            **base,
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": "{{text}}",
            "metric_list": [{"metric": "bits_per_byte"}],
        }
    if benchmark.checker == "gsm8k":
        return {
            **base,
            "output_type": "generate_until",
            "doc_to_text": lambda doc: generation_text(benchmark, doc, shots),
            "doc_to_target": "{{answer}}",
            "target_delimiter": " ",
            "generation_kwargs": {
                "until": list(RAW_STOPS["gsm8k"]),
                "do_sample": False,
                "max_gen_toks": max_new_tokens,
            },
            "filter_list": [
                {
                    "name": "flexible-extract",
                    "filter": [
                        {"function": "regex", "group_select": -1, "regex_pattern": r"(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                        {"function": "take_first"},
                    ],
                }
            ],
            "metric_list": [
                {
                    "metric": "exact_match",
                    "aggregation": "mean",
                    "ignore_case": True,
                    "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"],
                }
            ],
        }
    from lm_eval.tasks.ifeval import utils as ifeval_utils

    return {
        **base,
        "output_type": "generate_until",
        "doc_to_text": "{{prompt}}",
        "doc_to_target": 0,
        "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": max_new_tokens},
        "process_results": ifeval_utils.process_results,
        "metric_list": [
            {"metric": "prompt_level_strict_acc", "aggregation": "mean"},
            {"metric": "inst_level_strict_acc", "aggregation": ifeval_utils.agg_inst_level_acc},
            {"metric": "prompt_level_loose_acc", "aggregation": "mean"},
            {"metric": "inst_level_loose_acc", "aggregation": ifeval_utils.agg_inst_level_acc},
        ],
    }


def _choice_text(doc):
    contexts = doc["contexts"]
    if len(set(contexts)) > 1:  # the choice is in the context (Winogrande): lm-eval's "multiple input" form
        return doc["gold"]
    return contexts[0]


def _choice_choices(doc):
    if len(set(doc["contexts"])) > 1:
        return doc["contexts"]
    return [c.removeprefix(" ") for c in doc["continuations"]]


def _choice_target(doc):
    if len(set(doc["contexts"])) > 1:
        return doc["continuations"][0].removeprefix(" ")
    return doc["gold"]


def lm_eval_rows(items: list[dict], benchmark) -> list[dict]:
    """Rows as lm-eval's task functions expect them (IFEval's `key` is an int there)."""
    if benchmark.checker == "ifeval":
        return [{**r, "key": int(r["id"])} for r in items]
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models:smollm2")
    parser.add_argument("--benchmarks", default=DEFAULT_BENCHMARKS)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()

    import tempfile

    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from align.benchmarks.run import run_benchmark, sample
    from align.benchmarks.tasks import lookup
    from align.config.benchmarks import BenchmarkSpec
    from align.config.common import ModelConfig
    from align.data import catalog
    from align.models import load_causal_lm, load_tokenizer, resolve_model_path
    from align.precision import precision_scope

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    config = ModelConfig(name_or_path=resolve_model_path(args.model))
    tokenizer = load_tokenizer(config)
    model = load_causal_lm(config)
    harness = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size)
    names = [n for n in args.benchmarks.split(",") if n]
    catalog.pull(list(dict.fromkeys(lookup(n).data for n in names)))
    rows_out = []
    with precision_scope(args.precision), tempfile.TemporaryDirectory() as tmp:
        for name in names:
            benchmark = lookup(name)
            rows, shots = catalog.load(benchmark.data)
            items = sample(rows, args.limit, args.seed)
            generative = benchmark.kind == "generate"
            chat = benchmark.checker == "ifeval"  # GSM8K compared in raw text (the harness's few-shot layout)
            spec = BenchmarkSpec(name=name, chat=chat, max_new_tokens=args.max_new_tokens if generative else None)
            started = time.perf_counter()
            ours = run_benchmark(model, tokenizer, spec, args.limit, args.seed, args.batch_size, progress=False)
            ours_seconds = time.perf_counter() - started
            if ours.refused:
                print(f"{name}: align refused: {ours.refused}")
                continue
            path = os.path.join(tmp, f"{name}.jsonl")
            with open(path, "w", encoding="utf-8") as handle:
                for row in lm_eval_rows(items, benchmark):
                    handle.write(json.dumps(row) + "\n")
            n_shots = ours.protocol.shots
            task = task_config(benchmark, path, args.max_new_tokens, shots[:n_shots])
            if benchmark.kind == "choice" and n_shots:
                raise SystemExit("the agreement bench compares 0-shot multiple choice")
            started = time.perf_counter()
            results = lm_eval.simple_evaluate(
                model=harness, tasks=[task], apply_chat_template=chat, log_samples=False, bootstrap_iters=0,
                verbosity="ERROR",
            )  # fmt: skip
            theirs_seconds = time.perf_counter() - started
            theirs = results["results"][task["task"]]
            kind = benchmark.checker if generative else benchmark.kind
            compared = dict(COMPARED[kind])
            if kind == "choice" and len(set(items[0]["contexts"])) > 1:
                compared.pop(
                    "acc_norm"
                )  # the harness normalises partial scoring by the contexts' lengths: not a metric
            for metric, their_key in compared.items():
                ours_value, theirs_value = ours.metrics[metric]["value"], theirs[their_key]
                scale = 1 if metric == "bits_per_byte" else 100
                rows_out.append(
                    {
                        "benchmark": name,
                        "metric": metric,
                        "n": len(items),
                        "lm_eval": round(scale * theirs_value, 3),
                        "align": round(scale * ours_value, 3),
                        "diff_points": round(scale * (ours_value - theirs_value), 3),
                        "lm_eval_items_per_s": round(len(items) / theirs_seconds, 3),
                        "align_items_per_s": round(len(items) / ours_seconds, 3),
                        "speed_ratio": round(theirs_seconds / ours_seconds, 3),
                    }
                )
    print(f"model {args.model}, precision {args.precision}, limit {args.limit}, seed {args.seed}")
    header = list(rows_out[0]) if rows_out else []
    print(" | ".join(header))
    for row in rows_out:
        print(" | ".join(str(row[k]) for k in header))
    print(json.dumps(rows_out))


if __name__ == "__main__":
    main()
