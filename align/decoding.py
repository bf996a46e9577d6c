"""The decoding loop behind `align.generation.generate`: prefill, then one cached forward per new
token, and finished rows dropped from the batch as it goes.

`transformers`' `generate` keeps every row of a batch in every forward until the longest answer
stops: a GRPO batch whose answers average 12 of 24 tokens, or an IFEval batch where a third of the
answers end under 100 tokens and the rest run to 1,280, spends most of its compute on rows that
have finished. Here a row that emitted a stop id stays (fed padding, its output ignored) only
until a quarter of the live batch has finished; then the KV cache, mask and positions keep just
the live rows. The n samples of one prompt (GRPO's groups, annotation candidates) share one
prefill: `generate` reads the same prompt n times. Greedy tokens are those of `generate` (tested
against it); sampling applies temperature, then top-k, then top-p, as `generate` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import DynamicCache, StaticCache

from align.architecture import unwrapped


def sampling_filter(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """(n, V) logits -> the same with every token outside top-k / the top-p nucleus at -inf, after
    dividing by the temperature. The nucleus keeps the most likely tokens whose probabilities sum
    to at least top_p (the token that crosses it included), and always the most likely one."""
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the tokens more likely than it already reach top_p
        drop_sorted = (cumulative - ordered.softmax(dim=-1)) >= top_p
        drop_sorted[..., 0] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_tokens(logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """(n, V) last-position logits -> (n,) next ids: argmax, or a draw from the filtered distribution."""
    if not do_sample:
        return logits.argmax(dim=-1)
    probs = sampling_filter(logits.float(), temperature, top_k, top_p).softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1).squeeze(1)


def rows_to_drop(finished: int, present: int) -> bool:
    """Compact the batch once a quarter of its rows (at least one) have finished: each compaction
    copies the whole KV cache, so a batch of 16 compacts a handful of times, not 16."""
    return finished > 0 and finished >= max(1, present // 4)


def _cache_keyword(model) -> str:
    """The forward's name for the KV cache: `cache` from transformers 5.2x, `past_key_values` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(unwrapped(model).forward).parameters else "past_key_values"


def _select_rows(cache, rows: torch.Tensor) -> None:
    """Keep `rows` of every layer of a dynamic or preallocated cache."""
    for layer in cache.layers:
        if not getattr(layer, "is_initialized", False):
            continue
        layer.keys = layer.keys.index_select(0, rows)
        layer.values = layer.values.index_select(0, rows)
        if hasattr(layer, "batch_size"):
            layer.batch_size = len(rows)


@torch.no_grad()
def decode(
    model,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    pad_id: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    static_cache: bool = False,
    group_size: int = 1,
    on_step: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """(B, P) left-padded prompts -> (B, R) response ids, R the most steps any row took; after a
    row's stop id its columns hold `pad_id`. Rows in consecutive groups of `group_size` that hold
    the same prompt (n samples per prompt) share one prefill: the prompt is read once and its KV
    cache copied to the group. The model is an HF causal LM (or a LoRA-type PEFT wrapper) whose
    forward takes position_ids; the caller sets eval mode and no_grad contexts. `on_step(rows,
    tokens)` sees each step's new token of every live row as it is chosen (a chat streams them)."""
    batch, width = query_ids.shape
    device = query_ids.device
    out = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    stop = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=device)
    config = unwrapped(model).config
    cache_keyword = _cache_keyword(model)
    cache = (
        StaticCache(config=config, max_cache_len=width + max_new_tokens)
        if static_cache
        else DynamicCache(config=config)
    )

    def last_logits(inputs: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return model(
            input_ids=inputs,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{cache_keyword: cache},
            logits_to_keep=1,
        ).logits[:, -1, :]

    live = torch.arange(batch, device=device)  # the original row of each row still in the batch
    done = torch.zeros(batch, dtype=torch.bool, device=device)  # finished but not yet dropped
    mask = query_mask.long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    if shared_prompts(query_ids, query_mask, group_size):
        firsts = torch.arange(0, batch, group_size, device=device)
        logits = last_logits(query_ids[firsts], mask[firsts], positions[firsts])
        spread = torch.arange(len(firsts), device=device).repeat_interleave(group_size)
        _select_rows(cache, spread)
        logits = logits[spread]
    else:
        logits = last_logits(query_ids, mask, positions)
    steps = 0
    for step in range(max_new_tokens):
        chosen = next_tokens(logits, do_sample, temperature, top_k, top_p)
        chosen = torch.where(done, torch.full_like(chosen, pad_id), chosen)
        out[live, step] = torch.where(done, out[live, step], chosen)
        if on_step is not None:
            on_step(live[~done], chosen[~done])
        steps = step + 1
        done = done | torch.isin(chosen, stop)
        if bool(done.all()) or steps == max_new_tokens:
            break
        if rows_to_drop(int(done.sum()), len(live)):
            keep = (~done).nonzero().squeeze(1)
            _select_rows(cache, keep)
            live, done, mask, positions, chosen = live[keep], done[keep], mask[keep], positions[keep], chosen[keep]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions[:, -1:] + 1
        logits = last_logits(chosen[:, None], mask, positions)
    return out[:, :steps]


def shared_prompts(query_ids: torch.Tensor, query_mask: torch.Tensor, group_size: int) -> bool:
    """Whether every consecutive group of `group_size` rows holds one prompt (worth one prefill)."""
    batch = query_ids.shape[0]
    if group_size <= 1 or batch % group_size:
        return False
    ids, mask = query_ids.view(-1, group_size, query_ids.shape[1]), query_mask.view(-1, group_size, query_mask.shape[1])
    return bool((ids == ids[:, :1]).all() and (mask == mask[:, :1]).all())
