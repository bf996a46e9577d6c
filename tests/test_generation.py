"""The one generation helper: n samples per prompt in prompt-major rows, greedy = HF greedy,
left padding without touching the tokenizer, every stop id ends a response."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_llama

from align.generation import (
    GenerationSettings,
    batches_by_length,
    decode_responses,
    generate,
    generate_texts,
    settings_for,
    stop_token_ids,
)

EOS, PAD, EOT = 2, 0, 3


@pytest.fixture(scope="module")
def model():
    return tiny_llama(vocab_size=40, pad=PAD, eos=EOS)


class Tok:
    """Just what the helper reads from a tokenizer."""

    eos_token_id, pad_token_id, padding_side = EOS, PAD, "right"

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(i) for i in ids if not (skip_special_tokens and i in (EOS, PAD)))


def test_samples_per_prompt_are_prompt_major(model):
    settings = GenerationSettings(max_new_tokens=5, eos_token_ids=(EOS,), pad_token_id=PAD, samples_per_prompt=3)
    torch.manual_seed(1)
    rollout = generate(model, [[5, 6, 7], [8]], settings)
    assert rollout.query_ids.shape[0] == 6
    assert rollout.query_ids[:3].tolist() == [[5, 6, 7]] * 3 and rollout.query_ids[3:].tolist() == [[PAD, PAD, 8]] * 3


def test_greedy_matches_transformers_and_keeps_training_mode(model):
    settings = GenerationSettings(max_new_tokens=6, do_sample=False, eos_token_ids=(EOS,), pad_token_id=PAD)
    model.train()
    ours = generate(model, [[5, 6, 7]], settings)
    assert model.training
    model.eval()
    reference = model.generate(
        torch.tensor([[5, 6, 7]]), max_new_tokens=6, do_sample=False, pad_token_id=PAD, eos_token_id=EOS
    )
    n = int(ours.response_mask[0].sum())
    assert ours.response_ids[0, :n].tolist() == reference[0, 3 : 3 + n].tolist()


def test_long_answers_use_a_preallocated_cache_with_the_same_tokens(model):
    """From STATIC_CACHE_FROM new tokens the cache is preallocated; greedy tokens are those of the
    growing cache (fp32), padded rows included."""
    from align.generation import STATIC_CACHE_FROM, uses_static_cache

    settings = GenerationSettings(
        max_new_tokens=STATIC_CACHE_FROM, do_sample=False, eos_token_ids=(EOS,), pad_token_id=PAD
    )
    assert uses_static_cache(model, settings)
    assert not uses_static_cache(model, GenerationSettings(max_new_tokens=STATIC_CACHE_FROM - 1))
    ours = generate(model, [[5, 6, 7], [8]], settings)
    ids, mask = torch.tensor([[5, 6, 7], [PAD, PAD, 8]]), torch.tensor([[1, 1, 1], [0, 0, 1]])
    reference = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=STATIC_CACHE_FROM, do_sample=False, pad_token_id=PAD,
        eos_token_id=EOS,
    )  # fmt: skip
    assert ours.response_ids.tolist() == reference[:, 3:].tolist()
    assert ours.response_mask.sum() > 10  # answers, not an immediate stop


def test_any_stop_id_ends_the_response_and_is_not_decoded(model):
    model.generation_config.eos_token_id = [EOS, EOT]
    tok = Tok()
    assert stop_token_ids(tok, model) == (EOS, EOT)
    settings = settings_for(tok, model, 4, do_sample=False)
    assert settings.eos_token_ids == (EOS, EOT) and settings.pad_token_id == PAD
    from align.generation import response_mask_from_tokens

    mask, ended = response_mask_from_tokens(torch.tensor([[9, EOT, 9, 9], [9, 9, 9, 9]]), settings.eos_token_ids)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]] and ended.tolist() == [True, False]
    from align.generation import Rollout

    rollout = Rollout(
        torch.zeros(2, 1, dtype=torch.long),
        torch.ones(2, 1, dtype=torch.long),
        torch.tensor([[9, EOT, 9, 9], [9, 8, 7, 6]]),
        mask,
        ended,
    )
    assert decode_responses(tok, rollout) == ["9", "9 8 7 6"]


def test_generate_texts_batches_without_touching_the_tokenizer(model):
    tok = Tok()
    settings = GenerationSettings(max_new_tokens=3, do_sample=False, eos_token_ids=(EOS,), pad_token_id=PAD)
    prompts = [[5], [6, 7], [8, 9, 10], [11]]
    together = generate_texts(model, tok, prompts, settings, batch_size=4)
    one_by_one = [generate_texts(model, tok, [p], settings, batch_size=1)[0] for p in prompts]
    assert together == one_by_one and tok.padding_side == "right"
    # batches are cut from the prompts sorted by length; the answers come back in the prompts' order
    two = GenerationSettings(
        max_new_tokens=3, do_sample=False, eos_token_ids=(EOS,), pad_token_id=PAD, samples_per_prompt=2
    )
    bucketed = generate_texts(model, tok, prompts, two, batch_size=2)
    assert bucketed == [text for text in one_by_one for _ in range(2)]


def test_bf16_generation_reuses_casts_within_a_call_and_never_across_a_weight_update():
    """In a bf16 stage, frozen weights are cast once per generate call (marked for the call, restored
    after) and the cache is dropped at its end: generation after an in-place weight update matches
    a model that was built with those weights."""
    import copy

    from align.device import DeviceInfo
    from align.precision import autocast_forward, precision_scope

    cpu = DeviceInfo("cpu", "cpu", 1, True, False)
    model = autocast_forward(tiny_llama(vocab_size=40, pad=PAD, eos=EOS, seed=3))
    model.model.requires_grad_(False)  # frozen base (as under LoRA), trainable head
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    settings = GenerationSettings(max_new_tokens=8, do_sample=False, eos_token_ids=(), pad_token_id=PAD)
    prompts = [[5, 6, 7], [9, 4]]
    with precision_scope("bf16", device=cpu):
        first = generate(model, prompts, settings)
        assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
        with torch.no_grad():  # an optimizer step on the frozen part and on the head
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.5)
        after = generate(model, prompts, settings)
        fresh = generate(copy.deepcopy(model), prompts, settings)
        logits = model(torch.tensor([prompts[0]])).logits
    assert logits.dtype == torch.bfloat16  # the forward ran under autocast
    assert model(torch.tensor([prompts[0]])).logits.dtype == torch.float32  # outside the stage: fp32
    assert after.response_ids.tolist() == fresh.response_ids.tolist()
    assert after.response_ids.tolist() != first.response_ids.tolist()  # the update changed the greedy text


def test_a_lora_policy_decodes_merged_and_comes_back_unmerged_and_exact(monkeypatch):
    """generate folds a LoRA adapter into the weights for the call: the same tokens as the unmerged
    adapter, the adapter unmerged after, the base weights bit for bit what they were (merging by
    addition and unmerging by subtraction drifts by rounding each call: the reference moves and
    a resumed run samples differently), and with the adapter disabled the plain base model decodes."""
    import copy

    from peft.tuners.lora import LoraModel

    merges = []
    original_merge = LoraModel.merge_adapter
    monkeypatch.setattr(
        LoraModel, "merge_adapter", lambda self, *a, **k: merges.append(1) or original_merge(self, *a, **k)
    )

    from peft import LoraConfig, get_peft_model

    base = tiny_llama(vocab_size=40, pad=PAD, eos=EOS, seed=5)
    reference = copy.deepcopy(base)
    policy = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    settings = GenerationSettings(max_new_tokens=8, do_sample=False, eos_token_ids=(), pad_token_id=PAD)
    prompts = [[5, 6, 7], [9, 4]]
    merged = generate(policy, prompts, settings)
    for _ in range(4):
        generate(policy, prompts, settings)
    assert merges == [1] * 5
    ids, mask = merged.query_ids, merged.query_mask
    with torch.no_grad():  # the unmerged adapter's greedy decoding, one full forward per token
        for _ in range(8):
            logits = policy(input_ids=ids, attention_mask=mask).logits
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    assert merged.response_ids.tolist() == ids[:, merged.query_ids.shape[1] :].tolist()
    layers = [m for m in policy.modules() if hasattr(m, "merged")]
    assert layers and not any(m.merged for m in layers)
    restored = policy.get_base_model().state_dict()
    for key, value in reference.state_dict().items():
        lora_key = key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(restored.get(lora_key, restored.get(key)), value), key
    with policy.disable_adapter():
        plain = generate(policy, prompts, settings)
    assert merges == [1] * 5  # the reference decodes with the plain weights, nothing folded
    assert plain.response_ids.tolist() == generate(reference, prompts, settings).response_ids.tolist()


def test_batches_are_cut_from_the_length_order():
    assert batches_by_length([5, 1, 4, 2, 3], 2) == [[1, 3], [4, 2], [0]]
    assert batches_by_length([], 3) == []
