"""What SFT changed: validation loss/perplexity, generation quality, forgetting.

Pure functions of (model, tokenizer, data); the stage decides which models to compare
(base vs tuned) and where the figures go. All metrics are token-weighted means, so a
perplexity here is exp(total NLL / total target tokens).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from align.generation import chat_prompt_ids, generate_texts, settings_for
from align.metrics.text import ANSWER_METRICS
from align.sft.data import Encoded, Message


@dataclass
class EvalSet:
    """Held-out prompts with reference answers (and a task label for per-task figures)."""

    prompts: list[list[Message]]
    references: list[str]
    tasks: list[str] = field(default_factory=list)


@torch.no_grad()
def sequence_logprobs(
    model, input_ids: list[list[int]], masks: list[list[int]], pad_id: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: (sum of log p(token | left context) over the tokens where mask == 1, their count).
    Both (N,). Batches are right-padded; the model is put in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    sums, counts = [], []
    for start in range(0, len(input_ids), batch_size):
        ids, mask = input_ids[start : start + batch_size], masks[start : start + batch_size]
        width = max(len(x) for x in ids)
        batch = torch.full((len(ids), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(ids), width), dtype=torch.long)
        target = torch.zeros((len(ids), width), dtype=torch.bool)
        for row, (x, m) in enumerate(zip(ids, mask)):
            batch[row, : len(x)] = torch.tensor(x)
            attention[row, : len(x)] = 1
            target[row, : len(m)] = torch.tensor(m, dtype=torch.bool)
        logits = model(input_ids=batch.to(device), attention_mask=attention.to(device)).logits.float()  # (B, T, V)
        logits = logits[:, -width:]  # prompt tuning prepends virtual-token positions
        logp = torch.log_softmax(logits[:, :-1], dim=-1)  # position t predicts token t+1
        token_logp = logp.gather(-1, batch[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        keep = target[:, 1:].to(device)
        sums.append((token_logp * keep).sum(1).cpu())
        counts.append(keep.sum(1).cpu())
    return torch.cat(sums), torch.cat(counts)


def masked_nll(
    model, input_ids: list[list[int]], masks: list[list[int]], pad_id: int, batch_size: int
) -> tuple[float, int]:
    """(summed NLL, target-token count) of the tokens where mask == 1, predicted from the left context."""
    sums, counts = sequence_logprobs(model, input_ids, masks, pad_id, batch_size)
    return -float(sums.sum()), int(counts.sum())


def loss_and_perplexity(model, encoded: Encoded, pad_id: int, batch_size: int) -> dict[str, float]:
    """Mean loss on response tokens and its perplexity exp(loss)."""
    nll, count = masked_nll(model, encoded.input_ids, encoded.completion_mask, pad_id, batch_size)
    loss = nll / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": count}


def text_perplexity(model, tokenizer, lines: Sequence[str], batch_size: int, max_length: int) -> float:
    """Perplexity of plain text (the retention set): every token after the first is a target."""
    ids = [list(x)[:max_length] for x in tokenizer(list(lines))["input_ids"]]
    nll, count = masked_nll(model, ids, [[1] * len(x) for x in ids], tokenizer.pad_token_id, batch_size)
    return math.exp(min(nll / max(count, 1), 50.0))


def generate(
    model, tokenizer, prompts: Sequence[list[Message]], max_new_tokens: int, batch_size: int, progress: bool = True
) -> list[str]:
    """Greedy answers to chat prompts, rendered with the chat template."""
    settings = settings_for(tokenizer, model, max_new_tokens, do_sample=False)
    ids = [chat_prompt_ids(tokenizer, p) for p in prompts]
    return generate_texts(model, tokenizer, ids, settings, batch_size, progress)


def answer_metrics(predictions: Sequence[str], references: Sequence[str], tasks: Sequence[str] = ()) -> dict[str, Any]:
    """Mean EM / token F1 / ROUGE-L / contains overall and per task."""
    rows = [{name: fn(p, r) for name, fn in ANSWER_METRICS.items()} for p, r in zip(predictions, references)]
    result: dict[str, Any] = {name: _mean([row[name] for row in rows]) for name in ANSWER_METRICS}
    if tasks:
        by_task: dict[str, list[dict]] = defaultdict(list)
        for task, row in zip(tasks, rows):
            by_task[task].append(row)
        result["per_task"] = {
            task: {"n": len(r), **{name: _mean([x[name] for x in r]) for name in ANSWER_METRICS}}
            for task, r in sorted(by_task.items())
        }
    return result


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def evaluate_model(
    model,
    tokenizer,
    validation: Encoded | None,
    eval_set: EvalSet | None,
    retention: Sequence[str] | None,
    max_new_tokens: int,
    batch_size: int,
    max_length: int,
    progress: bool = True,
) -> tuple[dict[str, Any], list[str]]:
    """All figures for one model, and its generated answers (for the sample table)."""
    figures: dict[str, Any] = {}
    if validation is not None and validation.input_ids:
        val = loss_and_perplexity(model, validation, tokenizer.pad_token_id, batch_size)
        figures["val_loss"], figures["val_perplexity"] = val["loss"], val["perplexity"]
    answers: list[str] = []
    if eval_set is not None and eval_set.prompts:
        answers = generate(model, tokenizer, eval_set.prompts, max_new_tokens, batch_size, progress)
        figures.update(answer_metrics(answers, eval_set.references, eval_set.tasks))
    if retention:
        figures["retention_perplexity"] = text_perplexity(model, tokenizer, retention, batch_size, max_length)
    return figures, answers


def forgetting_ratio(base: dict[str, Any], tuned: dict[str, Any]) -> float | None:
    """Retention perplexity after / before tuning: 1.0 = nothing forgotten, 2.0 = twice as perplexed."""
    if "retention_perplexity" not in base or "retention_perplexity" not in tuned:
        return None
    return tuned["retention_perplexity"] / base["retention_perplexity"]
