"""Chat templates and tokenizer conventions of the model families users bring, each set up the
way the family ships it (templates written here from each format's public structure): the
completion-only mask covers exactly the assistant's text and its end-of-turn token (checked
token by token against character offsets), generation stops at the end of the assistant turn
(whichever of the family's end ids the model emits), and no BOS is doubled."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_llama

from align.generation import chat_prompt_ids, decode_responses, generate, settings_for
from align.sft.data import tokenize_conversation

LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEMMA = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% elif m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)

# family -> template, special tokens, bos, eos, pad, the model's generation_config eos ids, end of turn,
# whether the tokenizer itself adds BOS, whether the family has a system role
FAMILIES = {
    "llama3": (
        LLAMA3,
        ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|end_of_text|>"],
        "<|begin_of_text|>",
        "<|eot_id|>",
        None,
        ["<|end_of_text|>", "<|eot_id|>"],
        "<|eot_id|>",
        True,
        True,
    ),
    "chatml": (
        CHATML,
        ["<|im_start|>", "<|im_end|>", "<|endoftext|>"],
        None,
        "<|im_end|>",
        "<|im_end|>",
        ["<|im_end|>", "<|endoftext|>"],
        "<|im_end|>",
        False,
        True,
    ),
    "gemma": (
        GEMMA,
        ["<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>"],
        "<bos>",
        "<eos>",
        "<pad>",
        ["<eos>", "<end_of_turn>"],
        "<end_of_turn>",
        True,
        False,
    ),
    "mistral": (MISTRAL, ["<s>", "</s>", "[INST]", "[/INST]"], "<s>", "</s>", None, ["</s>"], "</s>", True, False),
}


def family_tokenizer(tiny_world, family: str):
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    template, specials, bos, eos, pad, _, _, adds_bos, _ = FAMILIES[family]
    tokenizer = AutoTokenizer.from_pretrained(tiny_world / "model")
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token = bos, eos, pad
    tokenizer.chat_template = template
    post = (
        TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tokenizer.convert_tokens_to_ids(bos))])
        if adds_bos
        else None
    )
    tokenizer._tokenizer.post_processor = post or TemplateProcessing(single="$A")
    return tokenizer


def conversation(with_system: bool) -> list[dict]:
    turns = [
        {"role": "user", "content": "What is two plus three?"},
        {"role": "assistant", "content": "Five."},
        {"role": "user", "content": "And four plus four?"},
        {"role": "assistant", "content": "Eight, I think."},
    ]
    return ([{"role": "system", "content": "Answer briefly."}] if with_system else []) + turns


def expected_mask(tokenizer, text: str, answers: list[str], end: str) -> tuple[list[int], list[int]]:
    """Ids of the rendered text and 1 on the tokens inside each answer + its end-of-turn token."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans, cursor = [], 0
    for answer in answers:
        start = text.index(answer, cursor)
        stop = text.index(end, start + len(answer)) + len(end)
        spans.append((start, stop))
        cursor = stop
    mask = [int(any(a <= s and e <= b for a, b in spans)) for s, e in enc["offset_mapping"]]
    return enc["input_ids"], mask


@pytest.mark.parametrize("family", list(FAMILIES))
def test_mask_covers_exactly_the_answer_and_its_end_of_turn(family, tiny_world):
    tokenizer = family_tokenizer(tiny_world, family)
    *_, end, _, system = FAMILIES[family]
    conv = conversation(with_system=system)
    ids, mask = tokenize_conversation(tokenizer, conv)
    text = tokenizer.apply_chat_template(conv, tokenize=False)
    want_ids, want_mask = expected_mask(tokenizer, text, [m["content"] for m in conv if m["role"] == "assistant"], end)
    assert ids == want_ids
    assert mask == want_mask, [tokenizer.decode([i]) for i, m in zip(ids, mask) if m]
    assert tokenizer.decode([i for i, m in zip(ids, mask) if m]) == f"Five.{end}Eight, I think.{end}"


@pytest.mark.parametrize("family", [f for f, spec in FAMILIES.items() if spec[2] is not None])  # ChatML has no BOS
def test_no_doubled_bos(family, tiny_world):
    tokenizer = family_tokenizer(tiny_world, family)
    assert tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id  # the tokenizer adds one itself...
    conv = conversation(with_system=False)
    for ids in (chat_prompt_ids(tokenizer, conv[:1]), tokenize_conversation(tokenizer, conv)[0]):
        assert (
            ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
        )  # ...the template's alone stays


@pytest.mark.parametrize("family", list(FAMILIES))
def test_generation_stops_at_every_end_id_of_the_family(family, tiny_world):
    tokenizer = family_tokenizer(tiny_world, family)
    generation_eos = FAMILIES[family][5]
    model = tiny_llama(vocab_size=len(tokenizer), pad=tokenizer.pad_token_id or 0, eos=tokenizer.eos_token_id)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids(generation_eos)
    prompt = chat_prompt_ids(tokenizer, conversation(with_system=False)[:1])
    for end in generation_eos:  # the model says "end" first: the response must stop there, empty
        forced = tokenizer.convert_tokens_to_ids(end)
        handle = model.lm_head.register_forward_hook(
            lambda m, i, out, t=forced: out.index_fill(-1, torch.tensor([t]), 1e4)
        )
        try:
            rollout = generate(model, [prompt], settings_for(tokenizer, model, 8, do_sample=False))
        finally:
            handle.remove()
        assert bool(rollout.ended[0]) and int(rollout.response_mask[0].sum()) == 1, (family, end)
        assert decode_responses(tokenizer, rollout) == [""]


def test_a_tokenizer_without_template_or_pad_gets_the_defaults(tiny_world, tmp_path):
    from transformers import AutoTokenizer

    from align.config.common import ModelConfig
    from align.models import DEFAULT_CHAT_TEMPLATE, load_tokenizer

    raw = AutoTokenizer.from_pretrained(tiny_world / "model")
    raw.chat_template, raw.pad_token = None, None
    raw.save_pretrained(tmp_path / "tok")
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_world / "model"), tokenizer=str(tmp_path / "tok")))
    assert tokenizer.chat_template == DEFAULT_CHAT_TEMPLATE and "{% generation %}" in DEFAULT_CHAT_TEMPLATE
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # Llama-style: no pad token, EOS pads (masked)
    conv = conversation(with_system=True)
    ids, mask = tokenize_conversation(tokenizer, conv)
    text = tokenizer.apply_chat_template(conv, tokenize=False)
    assert (ids, mask) == expected_mask(tokenizer, text, ["Five.", "Eight, I think."], tokenizer.eos_token)
