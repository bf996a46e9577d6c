"""Other architectures than the demo's Llama, as random-weight tiny models sharing the tiny
world's tokenizer: prompt tuning generates on OPT and GPT-2 (positions from the attention
mask), and virtual tokens that overflow the context are refused before training."""

from __future__ import annotations

from pathlib import Path

import pytest

from align.config.sft import SFTConfig
from align.errors import AlignInputError


def tiny_model(kind: str, folder: Path, tokenizer, positions: int = 256) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel, OPTConfig, OPTForCausalLM

    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if kind == "gpt2":
        model = GPT2LMHeadModel(
            GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=2, n_head=2, n_positions=positions, **ids)
        )
    else:
        model = OPTForCausalLM(
            OPTConfig(
                vocab_size=len(tokenizer),
                hidden_size=16,
                ffn_dim=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                max_position_embeddings=positions,
                word_embed_proj_dim=16,
                **ids,
            )
        )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer(tiny_world):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_world / "model")


def sft_config(tiny_world, model: Path, out: Path, **update) -> SFTConfig:
    return SFTConfig.model_validate(
        {
            "model": {"name_or_path": str(model)},
            "data": {"train": str(tiny_world / "sft" / "train.jsonl"), "max_samples": 8, "max_length": 96},
            "update": {"mode": "prompt_tuning", "prompt": {"num_virtual_tokens": 4}, **update},
            "training": {"max_steps": 2, "batch_size": 4, "learning_rate": 0.01},
            "eval": {
                "data": str(tiny_world / "preference" / "test.jsonl"),
                "reference_column": "reference",
                "max_examples": 4,
                "max_new_tokens": 4,
                "compare_base": False,
            },
            "output": {"output_dir": str(out), "report_to": ["none"]},
        }
    )


@pytest.mark.parametrize("kind", ["opt", "gpt2"])
def test_prompt_tuning_trains_and_generates(kind, tiny_world, tokenizer, tmp_path):
    import stages.sft

    model = tiny_model(kind, tmp_path / kind, tokenizer)
    result = stages.sft.run(sft_config(tiny_world, model, tmp_path / "run"))
    assert result.metrics["global_steps"] == 2 and "tuned_exact_match" in result.metrics  # evaluation generated


def test_virtual_tokens_beyond_the_context_are_refused_first(tiny_world, tokenizer, tmp_path):
    import stages.sft

    model = tiny_model("gpt2", tmp_path / "gpt2", tokenizer, positions=96)
    with pytest.raises(
        AlignInputError,
        match=r"data.max_length 96 \+ update.prompt.num_virtual_tokens 4 = 100 .*lower data.max_length to 92",
    ):
        stages.sft.run(sft_config(tiny_world, model, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_context_length_reads_each_architectures_own_field(tokenizer, tmp_path):
    """One lookup for SFT's virtual-token check, PPO's context check, RAG's prompt truncation and the
    reward backbone: GPT-2 names its context n_positions."""
    from align.config.common import ModelConfig
    from align.models import context_length, load_causal_lm

    for kind, positions in (("gpt2", 96), ("opt", 80)):
        model = load_causal_lm(ModelConfig(name_or_path=str(tiny_model(kind, tmp_path / kind, tokenizer, positions))))
        assert context_length(model) == positions, kind
