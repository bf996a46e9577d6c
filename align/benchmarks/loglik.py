"""Log-likelihood of continuations and of whole texts, batched, the way lm-evaluation-harness
computes them (so figures agree with it on the same model and data).

A (context, continuation) pair is tokenized as the harness does: trailing spaces of the context
move to the continuation, the pair is encoded whole and the continuation is what follows the
context's own tokens; the tokenizer adds its usual special tokens (a Llama or Gemma tokenizer its
BOS, which these models were trained to start from). Sequences are left-padded and sorted by length, so one forward serves a
batch and only the last positions' logits are computed (`logits_to_keep`). A text's perplexity
uses disjoint windows of the context length, each predicted from the previous window's end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from align.generation import batches_by_length, left_pad, pad_token_id

TokenPair = tuple[tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class Scored:
    logprob: float  # sum over the continuation's tokens, natural log
    greedy: bool  # every continuation token is the model's top choice
    tokens: int


def prefix_token_id(tokenizer) -> int:
    """What an empty context starts from: BOS where the tokenizer has one, else end-of-text."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def encode_pair(tokenizer, context: str, continuation: str) -> TokenPair:
    spaces = len(context) - len(context.rstrip(" "))
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation)["input_ids"]
    if not context:
        return (prefix_token_id(tokenizer),), tuple(whole)
    head = tokenizer(context)["input_ids"]
    return tuple(whole[: len(head)]), tuple(whole[len(head) :])


def rolling_pairs(tokenizer, text: str, max_length: int) -> list[TokenPair]:
    """A text as disjoint windows of at most max_length predicted tokens; each window's input is
    the token before it plus all but its last token (the harness's rolling windows; like the
    harness, a tokenizer that adds BOS has that BOS predicted from the prefix token too)."""
    ids = tokenizer(text)["input_ids"]
    stream = [prefix_token_id(tokenizer), *ids]
    pairs = []
    for start in range(0, len(ids), max_length):
        targets = ids[start : start + max_length]
        pairs.append((tuple(stream[start : start + 1]), tuple(targets)))
    return pairs


@torch.no_grad()
def score_pairs(
    model,
    tokenizer,
    pairs: Sequence[TokenPair],
    batch_size: int,
    max_length: int,
    progress: bool = False,
    desc: str = "scoring",
) -> list[Scored]:
    """Log-probability of each continuation given its context; identical pairs are computed once."""
    unique = list(dict.fromkeys(pairs))
    inputs = [(ctx + cont)[:-1][-max_length:] for ctx, cont in unique]
    results: dict[TokenPair, Scored] = {}
    pad = pad_token_id(tokenizer)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for chunk in tqdm(
            batches_by_length([len(x) for x in inputs], batch_size), desc=desc, disable=not progress, leave=False
        ):
            ids, mask = left_pad([inputs[i] for i in chunk], pad)
            keep = max(len(unique[i][1]) for i in chunk)
            logits = _last_logits(model, ids.to(device), mask.to(device), keep)
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for row, i in enumerate(chunk):
                continuation = unique[i][1]
                n = len(continuation)
                target = torch.tensor(continuation, device=device)
                row_logprobs = logprobs[row, keep - n :]
                picked = row_logprobs.gather(-1, target[:, None]).squeeze(-1)
                greedy = bool((row_logprobs.argmax(-1) == target).all())
                results[unique[i]] = Scored(float(picked.sum()), greedy, n)
    finally:
        model.train(was_training)
    return [results[pair] for pair in pairs]


def _last_logits(model, ids: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
    """Logits of the last `keep` positions of a left-padded batch (positions count real tokens only)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    try:
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep)
    except TypeError:  # an architecture without logits_to_keep computes every position
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions)
    return out.logits[:, -keep:]
