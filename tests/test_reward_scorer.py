"""RewardScorer: same score for the same text whatever the batch, padding side or order."""

from __future__ import annotations

import pytest
import torch

from align.config.common import ModelConfig
from align.errors import AlignInputError
from align.reward.model import load_backbone, save_reward_model
from align.reward.scorer import RewardScorer

PROMPTS = ["What is 3 + 4?", "hi", "Tell me about the lazy dog and the quick brown fox, please.", "What is 3 + 4?"]
RESPONSES = ["7", "Sure! Hello there, friend.", "fox", "Sure! 3 + 4 = 7."]


def _tiny_llama(folder):
    from transformers import LlamaConfig, LlamaForCausalLM

    from align.demo.gold import POLITE_OPENERS
    from align.demo.tasks import FILLERS, SORT_WORDS
    from align.demo.tokenizer import build_tokenizer

    words = " ".join(SORT_WORDS)
    texts = [
        f"{o} The answer is {i} + {i + 1} = {2 * i + 1}. {f} {words.upper()} {words}"
        for i, (o, f) in enumerate(zip(POLITE_OPENERS * 30, FILLERS * 40))
    ]
    tok = build_tokenizer(texts, 900, 128)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["llama", "minilm"])
def reward_dir(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    name = str(_tiny_llama(root / "lm")) if request.param == "llama" else "minilm"
    model, tokenizer, meta = load_backbone(ModelConfig(name_or_path=name))
    torch.manual_seed(1)
    head = model.score if hasattr(model, "score") else model.classifier
    torch.nn.init.normal_(head.weight, std=1.0)  # a head that gives visibly different scores
    meta.reward_mean, meta.reward_std = 0.5, 2.0
    save_reward_model(model, tokenizer, meta, root / "run" / "final")
    return root / "run"


def test_same_score_whatever_the_batch_and_padding_side(reward_dir):
    scorer = RewardScorer(reward_dir, batch_size=4)
    together = scorer.score(PROMPTS, RESPONSES)
    assert together.shape == (4,) and together.dtype == torch.float32
    assert together.std() > 1e-4  # different texts, different scores
    scorer.batch_size = 1
    alone = scorer.score(PROMPTS, RESPONSES)
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    scorer.batch_size = 2
    scorer.tokenizer.padding_side = "left"  # the scorer pads itself; this must not matter
    reordered = scorer.score(PROMPTS[::-1], RESPONSES[::-1]).flip(0)
    torch.testing.assert_close(together, reordered, rtol=0, atol=1e-5)
    # one text batched with a much longer one (lots of padding) scores as it does alone
    padded = scorer.score([PROMPTS[1], PROMPTS[2] * 5], [RESPONSES[1], RESPONSES[2] * 5])[0]
    torch.testing.assert_close(padded, alone[1], rtol=0, atol=1e-5)


def test_normalisation_uses_the_saved_training_statistics(reward_dir):
    raw = RewardScorer(reward_dir).score(PROMPTS, RESPONSES)
    normed = RewardScorer(reward_dir, normalize=True).score(PROMPTS, RESPONSES)
    torch.testing.assert_close(normed, (raw - 0.5) / 2.0)


def test_not_a_reward_model_is_bad_input(tmp_path):
    with pytest.raises(AlignInputError, match="not a reward model"):
        RewardScorer(tmp_path)


def test_backbone_kinds_and_an_sft_lora_run_is_merged_first(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = _tiny_llama(tmp_path / "base")
    lm = AutoModelForCausalLM.from_pretrained(base)
    peft_model = get_peft_model(lm, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")  # adapter_config.json names the base path
    merged = peft_model.merge_and_unload()
    model, tokenizer, meta = load_backbone(ModelConfig(name_or_path=str(tmp_path / "adapter")))
    assert meta.input_format == "chat" and tokenizer.pad_token_id != tokenizer.eos_token_id
    torch.testing.assert_close(
        model.model.layers[0].self_attn.q_proj.weight, merged.model.layers[0].self_attn.q_proj.weight
    )
    _, _, encoder_meta = load_backbone(ModelConfig(name_or_path="minilm"))
    assert encoder_meta.input_format == "pair"
