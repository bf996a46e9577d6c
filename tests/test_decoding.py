"""The decoding loop: greedy tokens equal `transformers`' `generate` on every architecture of the
matrix while rows stop at different steps and leave the batch; the sampling filter on
hand-computed probabilities; when the batch compacts."""

from __future__ import annotations

import math

import pytest
import torch
from architectures import ARCHITECTURES, configs

from align.decoding import decode, next_tokens, rows_to_drop, sampling_filter

PAD, BOS, EOS, VOCAB = 0, 1, 2, 64
PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14], [15], [16, 17, 18, 19], [20, 21, 22]]


def tiny(kind: str, seed: int = 0):
    import transformers

    config_name, model_name, kwargs = configs(VOCAB, {"vocab_size": VOCAB, "bos_token_id": BOS, "eos_token_id": EOS, "pad_token_id": PAD})[kind]  # fmt: skip
    torch.manual_seed(seed)
    return getattr(transformers, model_name)(getattr(transformers, config_name)(**kwargs)).eval()


def padded(prompts):
    from align.generation import left_pad

    return left_pad(prompts, PAD)


def reference(model, ids, mask, new_tokens: int, stops) -> list[list[int]]:
    out = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False, pad_token_id=PAD,
        eos_token_id=list(stops) or None,
    )  # fmt: skip
    return [trim(row, stops) for row in out[:, ids.shape[1] :].tolist()]


def trim(row: list[int], stops) -> list[int]:
    """A response up to and including its first stop id."""
    for i, token in enumerate(row):
        if token in stops:
            return row[: i + 1]
    return row


def stops_at_different_steps(free: list[list[int]]) -> tuple[int, ...]:
    """Stop ids that end some rows early and at different steps: the tokens rows 0 and 2 emit at
    steps 2 and 5 of a run without stops."""
    return tuple(sorted({free[0][2], free[2][5]}))


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_greedy_tokens_equal_generate_while_rows_leave_the_batch(kind):
    model = tiny(kind)
    ids, mask = padded(PROMPTS)
    with torch.no_grad():
        free = reference(model, ids, mask, 12, ())
        stops = stops_at_different_steps(free)
        expected = reference(model, ids, mask, 12, stops)
        ours = decode(model, ids, mask, max_new_tokens=12, stop_ids=stops, pad_id=PAD)
    lengths = {len(row) for row in expected}
    assert len(lengths) > 1, f"rows should stop at different steps: {expected}"
    assert [trim(row, stops) for row in ours.tolist()] == expected
    assert ours.shape[1] == max(lengths)
    for row, answer in zip(ours.tolist(), expected):  # after the stop id: padding
        assert row[len(answer) :] == [PAD] * (len(row) - len(answer))


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gemma3_text", "gpt2"])
def test_a_preallocated_cache_gives_the_same_tokens_after_rows_leave(kind):
    model = tiny(kind)
    ids, mask = padded(PROMPTS)
    with torch.no_grad():
        free = reference(model, ids, mask, 12, ())
        stops = stops_at_different_steps(free)
        grown = decode(model, ids, mask, max_new_tokens=12, stop_ids=stops, pad_id=PAD)
        preallocated = decode(model, ids, mask, max_new_tokens=12, stop_ids=stops, pad_id=PAD, static_cache=True)
    assert preallocated.tolist() == grown.tolist()


def test_the_filter_keeps_top_k_and_the_nucleus_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    # softmax: 0.6439, 0.2369, 0.0871, 0.0321; probability of the tokens before each: 0, 0.64, 0.88, 0.97
    kept = torch.isfinite(sampling_filter(logits, 1.0, 0, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(sampling_filter(logits, 1.0, 0, 0.6)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(sampling_filter(logits, 1.0, 0, 0.9)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(sampling_filter(logits, 1.0, 3, 1.0)).tolist() == [[True, True, True, False]]
    # temperature 2 halves the logits: softmax of [1, 0.5, 0, -0.5]
    halved = sampling_filter(logits, 2.0, 0, 1.0).softmax(-1)[0]
    total = sum(math.exp(x) for x in (1, 0.5, 0, -0.5))
    assert halved.tolist() == pytest.approx([math.exp(x) / total for x in (1, 0.5, 0, -0.5)], abs=1e-6)
    # unsorted ids: the filter works on each token's own probability, wherever it sits
    shuffled = torch.tensor([[0.0, 2.0, -1.0, 1.0]])
    assert torch.isfinite(sampling_filter(shuffled, 1.0, 0, 0.7)).tolist() == [[False, True, False, True]]


def test_sampling_draws_only_from_the_nucleus_and_in_proportion():
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(4000, 1)
    drawn = next_tokens(logits, True, 1.0, 0, 0.7)
    counts = torch.bincount(drawn, minlength=4).tolist()
    assert counts[2] == counts[3] == 0
    share = counts[0] / 4000  # renormalised nucleus: 0.6439 / (0.6439 + 0.2369) = 0.731
    assert share == pytest.approx(0.731, abs=0.03)
    assert next_tokens(logits[:2], False, 1.0, 0, 1.0).tolist() == [0, 0]


def test_top_k_one_sampling_is_greedy_through_the_loop():
    model = tiny("llama")
    ids, mask = padded(PROMPTS)
    with torch.no_grad():
        greedy = decode(model, ids, mask, max_new_tokens=8, stop_ids=(EOS,), pad_id=PAD)
        sampled = decode(model, ids, mask, max_new_tokens=8, stop_ids=(EOS,), pad_id=PAD, do_sample=True, top_k=1)
    assert sampled.tolist() == greedy.tolist()


def test_the_batch_compacts_once_a_quarter_has_finished():
    assert not rows_to_drop(0, 16)
    assert not rows_to_drop(3, 16)
    assert rows_to_drop(4, 16)
    assert rows_to_drop(1, 3)  # small batches: every finished row leaves at once


def test_prompt_learning_adapters_decode_through_generate():
    from peft import LoraConfig, PrefixTuningConfig, TaskType, get_peft_model

    from align.generation import decodes_in_own_loop

    assert decodes_in_own_loop(tiny("llama"))
    lora = get_peft_model(tiny("llama"), LoraConfig(task_type=TaskType.CAUSAL_LM, r=2, target_modules=["q_proj"]))
    assert decodes_in_own_loop(lora)
    prefix = get_peft_model(tiny("llama"), PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=2))
    assert not decodes_in_own_loop(prefix)


@pytest.mark.parametrize("static", [False, True])
def test_samples_of_one_prompt_share_one_prefill_with_the_same_tokens(static):
    from align.decoding import shared_prompts

    model = tiny("llama")
    prompts = [p for p in PROMPTS[:3] for _ in range(3)]  # 3 prompts x 3 samples, prompt-major
    ids, mask = padded(prompts)
    assert shared_prompts(ids, mask, 3) and not shared_prompts(ids, mask, 2)
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape), with_kwargs=True)  # fmt: skip
    try:
        with torch.no_grad():
            free = reference(model, ids, mask, 10, ())
            stops = tuple(sorted({free[0][3]}))
            seen.clear()
            shared = decode(model, ids, mask, max_new_tokens=10, stop_ids=stops, pad_id=PAD, static_cache=static, group_size=3)  # fmt: skip
            prefill = seen[0]
            alone = decode(model, ids, mask, max_new_tokens=10, stop_ids=stops, pad_id=PAD, static_cache=static)
    finally:
        hook.remove()
    assert prefill == (3, ids.shape[1])  # the prompts read once, not nine times
    assert shared.tolist() == alone.tolist()
    sampled = decode(model, ids, mask, max_new_tokens=10, stop_ids=(), pad_id=PAD, do_sample=True, group_size=3)
    assert sampled.shape[0] == 9
