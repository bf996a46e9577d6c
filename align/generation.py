"""Batched generation for every caller (PPO rollouts, evaluation, RAG answers, annotation
candidates, world probes): one place that pads, samples or decodes greedily, stops at the
model's end-of-turn ids, gathers ZeRO-3 weights and decodes. The token loop itself is
`align.decoding` (finished rows leave the batch); prompt-learning adapters go through
`transformers`' `generate`.

Layout of one batch (B prompts x n samples, P = longest prompt, R = longest response):

    query_ids     (B*n, P)  left-padded prompts, so every response starts at column P
    response_ids  (B*n, R)  right-padded; response_mask (B*n, R) is 1 up to and including the
                            first stop id (tokens after it are padding, whatever their id)
    ended         (B*n,)    the response emitted a stop id before the length limit

Rows are prompt-major: the n samples of prompt i are rows i*n .. i*n+n-1. Prompts are token
ids; `chat_prompt_ids` / `text_prompt_ids` make them, so no caller touches the tokenizer's
padding side.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig

from align.architecture import unwrapped
from align.decoding import decode
from align.precision import reused_weight_casts

Message = dict[str, str]


@dataclass(frozen=True)
class GenerationSettings:
    """How to continue a prompt. `do_sample=False` is greedy (temperature/top_p/top_k unused);
    top_k=0 samples the full distribution, which PPO needs to score what it sampled."""

    max_new_tokens: int
    do_sample: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int = 0
    samples_per_prompt: int = 1


@dataclass
class Rollout:
    """Token ids and masks of generated responses (see the module docstring for shapes)."""

    query_ids: torch.Tensor  # (B, P)
    query_mask: torch.Tensor  # (B, P)
    response_ids: torch.Tensor  # (B, R)
    response_mask: torch.Tensor  # (B, R) float
    ended: torch.Tensor  # (B,) bool: emitted a stop id before the length limit
    # (B, R) float: every real token after the prompt, when some are not the model's (tool answers
    # in a multi-turn rollout, align.tools.episodes); None: the same as response_mask
    response_attention: torch.Tensor | None = None

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """What the scoring forward attends to: the prompt and every real response token."""
        attended = self.response_mask if self.response_attention is None else self.response_attention
        return torch.cat([self.query_mask.to(attended.dtype), attended], dim=1)

    def select(self, index: torch.Tensor) -> Rollout:
        picked = {f.name: getattr(self, f.name) for f in fields(self)}
        return Rollout(**{name: None if value is None else value[index] for name, value in picked.items()})


def stop_token_ids(tokenizer, model=None) -> tuple[int, ...]:
    """Every id that ends a response: the tokenizer's EOS plus the model's generation_config
    EOS ids (a Llama-3 style model ends a turn with <|eot_id|> and text with <|end_of_text|>)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(configured if isinstance(configured, (list, tuple)) else [configured])
    return tuple(sorted(i for i in ids if i is not None))


def pad_token_id(tokenizer) -> int:
    """The pad id for left padding; a tokenizer without one (Llama) pads with EOS (masked anyway)."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    return 0


def settings_for(tokenizer, model, max_new_tokens: int, **options) -> GenerationSettings:
    """Settings with the stop and pad ids read from this tokenizer and model."""
    return GenerationSettings(
        max_new_tokens, eos_token_ids=stop_token_ids(tokenizer, model), pad_token_id=pad_token_id(tokenizer), **options
    )


def chat_prompt_ids(tokenizer, messages: list[Message], **template_options) -> list[int]:
    """Prompt ids of a conversation rendered up to the assistant's reply. The template writes its
    own BOS, so the tokenizer adds no special tokens (no doubled BOS). `template_options` go to the
    template (e.g. `tools`)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **template_options)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def text_prompt_ids(tokenizer, text: str) -> list[int]:
    """Prompt ids of raw text (no template): the tokenizer adds its usual special tokens."""
    return list(tokenizer(text)["input_ids"])


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids (B, P), mask (B, P)) padded on the left."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids, mask


def response_mask_from_tokens(
    response_ids: torch.Tensor, eos_token_ids: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, R) sampled ids -> (mask (B, R) float, ended (B,) bool): keep tokens through the first stop id."""
    is_eos = torch.zeros_like(response_ids, dtype=torch.bool)
    for eos in eos_token_ids:
        is_eos |= response_ids == eos
    ended = is_eos.any(dim=1)
    # number of stop ids strictly before each position; a token is kept while that number is 0
    eos_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    return (eos_before == 0).float(), ended


def batches_by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices cut into batches of `batch_size` from the order of increasing length, so each batch
    pads to a length its members share; callers put the results back in the original order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def zero3_sharded(model: torch.nn.Module) -> bool:
    """Whether DeepSpeed ZeRO-3 holds the model's weights as shards."""
    first = next(model.parameters(), None)
    return first is not None and hasattr(first, "ds_id")


def gathered_params(model: torch.nn.Module):
    """Under DeepSpeed ZeRO-3 gather the sharded weights once for a whole generate() call;
    otherwise every decoding step would all-gather every layer (orders of magnitude slower)."""
    if zero3_sharded(model):
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(model.parameters()))
    return contextlib.nullcontext()


@contextlib.contextmanager
def lora_merged(model):
    """A PEFT LoRA model decodes with its adapter folded into the weights for the call, then
    unfolded: the same function (up to float rounding) without the adapter's two extra matmuls
    per layer and token (0.64 of the bare model's decoding speed on SmolLM2 before). TRL's GRPO
    does the same before it hands weights to vLLM. Not under ZeRO-3 (weights gathered per call).

    The merge writes into copies of the base tensors and the originals are put back after, never
    recomputed: unmerging by subtraction drifts by rounding on every call, so the frozen reference
    would move and a resumed run would sample differently. PEFT's own safe merge is no help here:
    from PEFT 0.22 it copies the merged result back into the original tensor. The price is one
    extra copy of the adapted weights while decoding."""
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    config = getattr(model, "active_peft_config", None)
    layer = next((m for m in model.modules() if isinstance(m, BaseTunerLayer)), None)
    foldable = (
        isinstance(model, PeftModel)
        and getattr(getattr(config, "peft_type", None), "value", None) == "LORA"
        and layer is not None
        and not layer.disable_adapters  # the reference (adapter off) decodes with the plain weights
        and not layer.merged
        and not zero3_sharded(model)
    )
    if not foldable:
        yield
        return
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    saved = []  # every tensor a merge may touch: a Linear's weight and bias, or an MoE layer's expert parameters
    for module in layers:
        base = module.get_base_layer()
        originals = {name: p.data for name, p in base.named_parameters(recurse=False)}
        for name, data in originals.items():
            getattr(base, name).data = data.clone()  # the merge, in place or not, lands in the copy
        saved.append((module, base, originals))
    model.merge_adapter()
    try:
        yield
    finally:
        for module, base, tensors in saved:
            for name, data in tensors.items():
                getattr(base, name).data = data
            module.merged_adapters.clear()


def uses_virtual_tokens(model) -> bool:
    """A PEFT prompt-tuning (or p-tuning) model: its virtual tokens are input embeddings prepended
    on every forward. Architectures that derive positions from the attention mask (OPT, GPT-2
    with a long prompt) lose them after the first cached step, so such models decode without
    the KV cache (slower, the same tokens)."""
    from peft import PeftType

    config = getattr(model, "active_peft_config", None)
    return getattr(config, "peft_type", None) in (PeftType.PROMPT_TUNING, PeftType.P_TUNING)


STATIC_CACHE_FROM = 128
"""From this many new tokens, decoding preallocates its KV cache (a `StaticCache`):
the default cache grows by concatenation, copying every layer's keys and values at every step,
which on a CPU took 35% of decoding 1,280-token answers; preallocated, 16 x 300 tokens decode
1.5x faster on SmolLM2 (2 cores, bf16), 64 tokens about as fast (bench/ceiling.py's rows)."""


def uses_static_cache(model, settings: GenerationSettings) -> bool:
    """Long answers from a model whose architecture supports a preallocated cache."""
    return settings.max_new_tokens >= STATIC_CACHE_FROM and bool(
        getattr(unwrapped(model), "_can_compile_fullgraph", False)
    )


def decodes_in_own_loop(model) -> bool:
    """Whether `align.decoding.decode` (finished rows dropped as they stop) can run this model: a
    plain causal LM or a LoRA-type adapter whose forward takes position ids. Prompt-learning
    adapters (prefix, prompt, p-tuning) bring their own cache or embeddings: `generate` runs those."""
    import inspect

    config = getattr(model, "active_peft_config", None)
    if config is not None and getattr(config, "is_prompt_learning", False):
        return False
    return "position_ids" in inspect.signature(unwrapped(model).forward).parameters


def _hf_config(settings: GenerationSettings, use_cache: bool = True, static_cache: bool = False) -> GenerationConfig:
    sampling = (
        {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k}
        if settings.do_sample
        else {"do_sample": False}
    )
    return GenerationConfig(
        **sampling,
        max_new_tokens=settings.max_new_tokens,
        eos_token_id=list(settings.eos_token_ids) or None,
        pad_token_id=settings.pad_token_id,
        use_cache=use_cache,
        **({"cache_implementation": "static"} if use_cache and static_cache else {}),
    )


@torch.no_grad()
def generate(model, prompts: Sequence[Sequence[int]], settings: GenerationSettings, on_step=None) -> Rollout:
    """Continue every prompt `settings.samples_per_prompt` times in one batch (KV cache on);
    model is an HF causal LM or a PEFT wrapper. The model's train/eval mode is restored.
    `on_step(rows, tokens)` streams each new token as it is chosen (align's own decoding loop;
    a prompt-learning adapter decodes through `generate` and streams nothing)."""
    device = next(model.parameters()).device
    n = settings.samples_per_prompt
    query_ids, query_mask = left_pad([p for p in prompts for _ in range(n)], settings.pad_token_id)
    query_ids, query_mask = query_ids.to(device), query_mask.to(device)
    was_training = model.training
    model.eval()
    # A mixture-of-experts model trained with its load-balancing loss (TRL sets output_router_logits)
    # would compute that loss on every decoding step, where the cached mask does not line up: off here.
    model_config = getattr(model, "config", None)
    router_logits = getattr(model_config, "output_router_logits", False)
    if router_logits:
        model_config.output_router_logits = False
    try:
        with gathered_params(model), lora_merged(model), reused_weight_casts(model):
            if decodes_in_own_loop(model):
                response_ids = decode(
                    model,
                    query_ids,
                    query_mask,
                    max_new_tokens=settings.max_new_tokens,
                    stop_ids=settings.eos_token_ids,
                    pad_id=settings.pad_token_id,
                    do_sample=settings.do_sample,
                    temperature=settings.temperature,
                    top_k=settings.top_k,
                    top_p=settings.top_p,
                    static_cache=uses_static_cache(model, settings),
                    group_size=n,
                    on_step=on_step,
                )
            else:
                config = _hf_config(settings, not uses_virtual_tokens(model), uses_static_cache(model, settings))
                out = model.generate(input_ids=query_ids, attention_mask=query_mask, generation_config=config)
                response_ids = out[:, query_ids.shape[1] :]
    finally:
        model.train(was_training)
        if router_logits:
            model_config.output_router_logits = True
    if response_ids.shape[1] == 0:  # max_new_tokens is >= 1, but guard the shape math anyway
        response_ids = torch.full((len(query_ids), 1), settings.pad_token_id, dtype=torch.long, device=device)
    mask, ended = response_mask_from_tokens(response_ids, settings.eos_token_ids)
    return Rollout(query_ids, query_mask, response_ids, mask, ended)


def decode_responses(tokenizer, rollout: Rollout) -> list[str]:
    """Response text without the stop id and padding, whitespace trimmed."""
    texts = []
    for ids, mask, ended in zip(rollout.response_ids, rollout.response_mask, rollout.ended):
        n = int(mask.sum().item()) - int(ended.item())  # drop the stop id itself
        texts.append(tokenizer.decode(ids[: max(n, 0)].tolist(), skip_special_tokens=True).strip())
    return texts


def generate_texts(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    settings: GenerationSettings,
    batch_size: int,
    progress: bool = False,
    desc: str = "generating",
) -> list[str]:
    """Decoded responses for many prompts in batches: samples_per_prompt texts per prompt, prompt-major,
    in the prompts' order. Batches are cut from the prompts sorted by length, so a batch pads to a
    length its prompts share instead of the longest prompt in the file."""
    n = settings.samples_per_prompt
    texts: list[str | None] = [None] * (len(prompts) * n)
    batches = batches_by_length([len(p) for p in prompts], batch_size)
    for chunk in tqdm(batches, desc=desc, disable=not progress, leave=False):
        answers = decode_responses(tokenizer, generate(model, [prompts[i] for i in chunk], settings))
        for j, i in enumerate(chunk):
            texts[i * n : (i + 1) * n] = answers[j * n : (j + 1) * n]
    return texts
