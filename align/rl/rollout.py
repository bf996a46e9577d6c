"""Rollout: sample responses for a batch of prompts, then score every sampled token with the
policy, the reference and the critic in one forward pass each.

Layout of one batch (B prompts, P = longest prompt, R = longest response):

    query_ids     (B, P)  left-padded prompts, so every response starts at column P
    response_ids  (B, R)  right-padded; response_mask (B, R) is 1 up to and including the
                          first EOS (tokens after it are padding, whatever their id)
    logprobs      (B, R)  log pi(a_t | s_t) of each response token (at the sampling temperature)

Positions are computed from the attention mask, so a left-padded prompt sees the same
position ids in the scoring forward as during generation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields

import torch
from transformers import GenerationConfig


@dataclass
class GenerationSettings:
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int = 0


@dataclass
class Rollout:
    query_ids: torch.Tensor  # (B, P)
    query_mask: torch.Tensor  # (B, P)
    response_ids: torch.Tensor  # (B, R)
    response_mask: torch.Tensor  # (B, R) float
    ended: torch.Tensor  # (B,) bool: emitted EOS before the length limit

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask.to(self.response_mask.dtype), self.response_mask], dim=1)

    def select(self, index: torch.Tensor) -> Rollout:
        return Rollout(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids (B, P), mask (B, P)) padded on the left."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids, mask


def response_mask_from_tokens(response_ids: torch.Tensor, eos_token_ids: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, R) sampled ids -> (mask (B, R) float, ended (B,) bool): keep tokens through the first EOS."""
    is_eos = torch.zeros_like(response_ids, dtype=torch.bool)
    for eos in eos_token_ids:
        is_eos |= response_ids == eos
    ended = is_eos.any(dim=1)
    # number of EOS strictly before each position; a token is kept while that number is 0
    eos_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    return (eos_before == 0).float(), ended


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def gathered_params(model: torch.nn.Module):
    """Under DeepSpeed ZeRO-3 gather the sharded weights once for a whole generate() call;
    otherwise every decoding step would all-gather every layer (orders of magnitude slower)."""
    params = list(model.parameters())
    if params and hasattr(params[0], "ds_id"):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params)
    return contextlib.nullcontext()


@torch.no_grad()
def generate(model, prompts: list[list[int]], settings: GenerationSettings) -> Rollout:
    """Sample one response per prompt with the KV cache; model is an HF causal LM (or PEFT wrapper)."""
    device = next(model.parameters()).device
    query_ids, query_mask = left_pad(prompts, settings.pad_token_id)
    query_ids, query_mask = query_ids.to(device), query_mask.to(device)
    config = GenerationConfig(
        do_sample=True,
        temperature=settings.temperature,
        top_p=settings.top_p,
        top_k=0,  # no hidden top-k truncation: we sample (and score) the full distribution
        max_new_tokens=settings.max_new_tokens,
        eos_token_id=list(settings.eos_token_ids),
        pad_token_id=settings.pad_token_id,
        use_cache=True,
    )
    was_training = model.training
    model.eval()
    with gathered_params(model):
        out = model.generate(input_ids=query_ids, attention_mask=query_mask, generation_config=config)
    model.train(was_training)
    response_ids = out[:, query_ids.shape[1]:]
    if response_ids.shape[1] == 0:  # max_new_tokens is >= 1, but guard the shape math anyway
        response_ids = torch.full((len(prompts), 1), settings.pad_token_id, dtype=torch.long, device=device)
    mask, ended = response_mask_from_tokens(response_ids, settings.eos_token_ids)
    return Rollout(query_ids, query_mask, response_ids, mask, ended)


def token_logprobs(
    model, rollout: Rollout, temperature: float = 1.0, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(a_t|s_t) (B, R) of the response tokens in one forward; entropy (B, R) if asked."""
    from align.rl.losses import entropy_from_logits

    attention_mask = rollout.attention_mask.long()
    logits = model(
        input_ids=rollout.input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask), use_cache=False
    ).logits
    P, R = rollout.query_ids.shape[1], rollout.response_ids.shape[1]
    logits = logits[:, P - 1 : P + R - 1].float() / temperature  # the logits that predicted each response token
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, rollout.response_ids.unsqueeze(-1)).squeeze(-1)
    entropy = entropy_from_logits(logits) if with_entropy else None
    return logprobs, entropy


def token_values(critic, rollout: Rollout) -> torch.Tensor:
    """V(s_t) (B, R) for the state before each response token (the critic reads the same tokens)."""
    attention_mask = rollout.attention_mask.long()
    values = critic(rollout.input_ids, attention_mask, position_ids(attention_mask))  # (B, P + R)
    P, R = rollout.query_ids.shape[1], rollout.response_ids.shape[1]
    return values[:, P - 1 : P + R - 1].float()


def decode_responses(tokenizer, rollout: Rollout) -> list[str]:
    """Response text without the EOS and padding."""
    texts = []
    for ids, mask, ended in zip(rollout.response_ids, rollout.response_mask, rollout.ended):
        n = int(mask.sum().item()) - int(ended.item())  # drop the EOS itself
        texts.append(tokenizer.decode(ids[: max(n, 0)].tolist(), skip_special_tokens=True).strip())
    return texts
