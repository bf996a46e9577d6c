"""One loaded model on a list of public benchmarks: prompts built per protocol, answers generated
or continuations scored, figures with standard errors, and per-item records for predictions/."""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from align.benchmarks import answers, ifeval
from align.benchmarks.loglik import encode_pair, rolling_pairs, score_pairs
from align.benchmarks.stats import mean_stderr, ratio_stderr
from align.benchmarks.tasks import Benchmark, lookup
from align.config.benchmarks import BenchmarkSpec
from align.data import catalog
from align.generation import chat_prompt_ids, generate_texts, settings_for, text_prompt_ids
from align.models import context_length

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
RAW_STOPS = {"gsm8k": ("Question:", "\n\n"), "math": ("Problem:", "\n\n")}


@dataclass(frozen=True)
class Protocol:
    """How a benchmark was run; written into eval.json beside its figures."""

    benchmark: str
    kind: str
    n: int
    of: int  # items in the full set
    shots: int
    chat: bool
    max_new_tokens: int | None
    stop: tuple[str, ...]
    normalisation: str
    sample_seed: int | None
    checker: str = ""


@dataclass
class BenchmarkResult:
    metrics: dict[str, dict[str, float]]  # name -> {value, stderr, n}
    headline: str
    protocol: Protocol
    seconds: float
    records: list[dict[str, Any]]
    refused: str | None = None

    def summary(self) -> dict[str, Any]:
        """The eval.json entry (records go to predictions/)."""
        out = {k: v for k, v in asdict(self).items() if k != "records"}
        out["items_per_second"] = round(self.protocol.n / self.seconds, 3) if self.seconds else None
        return out


def sample(rows: list[dict], limit: int | None, seed: int) -> list[dict]:
    """A seeded subsample in the file's order (the same items for every system)."""
    if limit is None or limit >= len(rows):
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in keep]


def _figure(value: float, stderr: float, n: int) -> dict[str, float]:
    return {"value": round(value, 6), "stderr": round(stderr, 6), "n": n}


def run_benchmark(
    model, tokenizer, spec: BenchmarkSpec, limit: int | None, seed: int, batch_size: int, progress: bool = True
) -> BenchmarkResult:
    benchmark = lookup(spec.name)
    rows, shots = catalog.load(benchmark.data)
    items = sample(rows, spec.limit or limit, seed)
    sampled = (spec.limit or limit) is not None and len(items) < len(rows)
    n_shots = benchmark.shots if spec.shots is None else spec.shots
    has_template = getattr(tokenizer, "chat_template", None) is not None
    chat = (benchmark.kind == "generate" and has_template) if spec.chat is None else spec.chat
    max_len = context_length(model) or 2048
    max_new = (spec.max_new_tokens or benchmark.max_new_tokens) if benchmark.kind == "generate" else None
    started = time.perf_counter()
    if benchmark.kind == "choice":
        result = _choice(model, tokenizer, benchmark, items, n_shots, chat, batch_size, max_len, progress)
    elif benchmark.kind == "perplexity":
        result = _perplexity(model, tokenizer, benchmark, items, batch_size, max_len, progress)
    else:
        result = _generate(
            model, tokenizer, benchmark, items, shots[:n_shots], chat, max_new, batch_size, max_len, progress
        )
    metrics, records, stop, normalisation, refused = result
    protocol = Protocol(
        benchmark=benchmark.name,
        kind=benchmark.kind,
        n=len(items),
        of=len(rows),
        shots=n_shots if benchmark.kind != "perplexity" else 0,
        chat=chat,
        max_new_tokens=max_new,
        stop=stop,
        normalisation=normalisation,
        sample_seed=seed if sampled else None,
        checker=ifeval.checker_protocol() if benchmark.checker == "ifeval" and not refused else benchmark.checker,
    )
    return BenchmarkResult(metrics, benchmark.headline, protocol, time.perf_counter() - started, records, refused)


def _refusal(reason: str, stop=(), normalisation=""):
    return {}, [], stop, normalisation, reason


# ---------------------------------------------------------------- log-likelihood multiple choice


def choice_contexts(row: dict, shots: int) -> list[str]:
    prefix = row["fewshot"] if shots else ""
    return [prefix + context for context in row["contexts"]]


def _choice(model, tokenizer, benchmark: Benchmark, items, shots, chat, batch_size, max_len, progress):
    normalisation = (
        "acc: sum of log-probabilities; acc_norm: divided by the choice's length in characters (without the space "
        "before it, as the harness counts)"
    )
    pairs = []
    for row in items:
        for context, continuation in zip(choice_contexts(row, shots), row["continuations"]):
            if chat:
                context = tokenizer.apply_chat_template(
                    [{"role": "user", "content": context}], tokenize=False, add_generation_prompt=True
                )
            pairs.append(encode_pair(tokenizer, context, continuation))
    longest = max(len(a) + len(b) for a, b in pairs)
    if longest > max_len:
        return _refusal(
            f"its longest {shots}-shot item is {longest} tokens, the model's context is {max_len}", (), normalisation
        )
    scored = score_pairs(model, tokenizer, pairs, batch_size, max_len, progress, desc=benchmark.name)
    records, acc, acc_norm, k = [], [], [], 0
    for row in items:
        n = len(row["continuations"])
        logprobs = [s.logprob for s in scored[k : k + n]]
        k += n
        normalised = [lp / max(1, len(c.removeprefix(" "))) for lp, c in zip(logprobs, row["continuations"])]
        pick, pick_norm = _argmax(logprobs), _argmax(normalised)
        acc.append(float(pick == row["gold"]))
        acc_norm.append(float(pick_norm == row["gold"]))
        records.append(
            {
                "id": row["id"],
                "gold": row["gold"],
                "pick": pick,
                "pick_norm": pick_norm,
                "logprobs": [round(x, 4) for x in logprobs],
            }
        )
    metrics = {"acc": _figure(*mean_stderr(acc), len(acc)), "acc_norm": _figure(*mean_stderr(acc_norm), len(acc_norm))}
    return metrics, records, (), normalisation, None


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


# ---------------------------------------------------------------- perplexity


def _perplexity(model, tokenizer, benchmark: Benchmark, items, batch_size, max_len, progress):
    normalisation = f"rolling windows of {max_len} tokens; bits per UTF-8 byte, perplexity per word and per token"
    pairs, owners = [], []
    for index, row in enumerate(items):
        for pair in rolling_pairs(tokenizer, row["text"], max_len):
            pairs.append(pair)
            owners.append(index)
    scored = score_pairs(model, tokenizer, pairs, batch_size, max_len, progress, desc=benchmark.name)
    nll = [0.0] * len(items)
    tokens = [0] * len(items)
    for owner, s in zip(owners, scored):
        nll[owner] -= s.logprob
        tokens[owner] += s.tokens
    bits = [x / math.log(2) for x in nll]
    sizes = [len(row["text"].encode("utf-8")) for row in items]
    words = [len(row["text"].split()) for row in items]
    bpb, bpb_err = ratio_stderr(bits, sizes)
    metrics = {
        "bits_per_byte": _figure(bpb, bpb_err, len(items)),
        "word_perplexity": _figure(math.exp(sum(nll) / sum(words)), 0.0, len(items)),
        "token_perplexity": _figure(math.exp(sum(nll) / sum(tokens)), 0.0, len(items)),
    }
    records = [
        {"id": row["id"], "nll": round(x, 4), "bytes": b, "tokens": t}
        for row, x, b, t in zip(items, nll, sizes, tokens)
    ]
    return metrics, records, (), normalisation, None


# ---------------------------------------------------------------- generation


def generation_messages(benchmark: Benchmark, row: dict, shots: list[dict]) -> list[dict[str, str]]:
    """The conversation a chat model answers: few-shot examples as earlier turns (the harness's
    --fewshot_as_multiturn), then the question."""
    if benchmark.checker == "ifeval":
        return [{"role": "user", "content": row["prompt"]}]

    def ask(question: str) -> str:
        return f"Question: {question}" if benchmark.checker == "gsm8k" else f"{question}\n{MATH_INSTRUCTION}"

    turns = []
    for shot in shots:
        turns += [
            {"role": "user", "content": ask(shot["question"])},
            {"role": "assistant", "content": shot["solution"]},
        ]
    return turns + [{"role": "user", "content": ask(row["question"])}]


def generation_text(benchmark: Benchmark, row: dict, shots: list[dict]) -> str:
    """The raw-text prompt (no chat template): the harness's few-shot layout."""
    if benchmark.checker == "ifeval":
        return row["prompt"]
    if benchmark.checker == "gsm8k":
        return (
            "".join(f"Question: {s['question']}\nAnswer: {s['solution']}\n\n" for s in shots)
            + f"Question: {row['question']}\nAnswer:"
        )
    return (
        "".join(f"Problem:\n{s['question']}\n\nSolution: {s['solution']}\n\n" for s in shots)
        + f"Problem:\n{row['question']}\n\nSolution:"
    )


def cut_at_stops(text: str, stops: tuple[str, ...]) -> str:
    cut = min([text.find(s) for s in stops if s in text], default=len(text))
    return text[:cut].strip()


def _generate(model, tokenizer, benchmark: Benchmark, items, shots, chat, max_new, batch_size, max_len, progress):
    stops = (
        ("Question:",)
        if chat and benchmark.checker == "gsm8k"
        else (() if chat else RAW_STOPS.get(benchmark.checker, ()))
    )
    normalisation = {
        "gsm8k": "exact_match: last number in the answer; strict_match: the number after 'The answer is' or '####'; commas, $ and a final full stop ignored",
        "math": "last \\boxed{} (or 'final answer is') compared with the reference by Math-Verify",
        "ifeval": "strict and loose readings; score = mean of prompt- and instruction-level strict accuracy (its standard "
        "error: the mean of theirs, an upper bound)",
    }[benchmark.checker]
    if chat:
        prompts = [chat_prompt_ids(tokenizer, generation_messages(benchmark, row, shots)) for row in items]
    else:
        prompts = [text_prompt_ids(tokenizer, generation_text(benchmark, row, shots)) for row in items]
    longest = max(len(p) for p in prompts)
    if longest + max_new > max_len:
        return _refusal(
            f"its longest prompt ({len(shots)} shots) is {longest} tokens and answers may take {max_new} more; "
            f"the model's context is {max_len}",
            stops,
            normalisation,
        )
    settings = settings_for(tokenizer, model, max_new, do_sample=False)
    texts = generate_texts(model, tokenizer, prompts, settings, batch_size, progress, desc=benchmark.name)
    texts = [cut_at_stops(t, stops) for t in texts]
    records = []
    if benchmark.checker == "ifeval":
        checks = [ifeval.check(row, text) for row, text in zip(items, texts)]
        figures = ifeval.ifeval_figures(checks)
        metrics = {name: _figure(*value) for name, value in figures.items()}
        prompt, instruction = metrics["prompt_level_strict"], metrics["inst_level_strict"]
        # the mean of two correlated means: its standard error is at most the mean of theirs
        stderr = (prompt["stderr"] + instruction["stderr"]) / 2
        metrics["score"] = _figure((prompt["value"] + instruction["value"]) / 2, stderr, len(items))
        for row, text, check in zip(items, texts, checks):
            records.append({"id": row["id"], "response": text, **check})
        return metrics, records, stops, normalisation, None
    scores = []
    for row, text in zip(items, texts):
        if benchmark.checker == "gsm8k":
            score = answers.gsm8k_scores(text, row["answer"])
        else:
            score = {
                "accuracy": float(answers.math_correct(text, answers.math_gold(row["answer"], row.get("solution"))))
            }
        scores.append(score)
        records.append({"id": row["id"], "answer": row["answer"], "response": text, **score})
    metrics = {name: _figure(*mean_stderr([s[name] for s in scores]), len(scores)) for name in scores[0]}
    return metrics, records, stops, normalisation, None
