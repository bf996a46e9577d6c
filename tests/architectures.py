"""Tiny random-weight models of real architectures, built in a test (no download), sharing the
tiny world's tokenizer: the architecture matrix's inputs."""

from __future__ import annotations

from pathlib import Path

SMALL = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 256,
}


def configs(vocab: int, ids: dict) -> dict:
    """model_type -> (config class name, model class name, kwargs)."""
    head = {"head_dim": 8}
    return {
        "llama": ("LlamaConfig", "LlamaForCausalLM", {**SMALL, **ids}),
        "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {**SMALL, **ids}),
        "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {**SMALL, **head, **ids}),
        "gemma": ("GemmaConfig", "GemmaForCausalLM", {**SMALL, **head, **ids}),
        "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {**SMALL, **head, **ids}),
        "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM", {**SMALL, **head, "sliding_window": 64, **ids}),
        "mistral": ("MistralConfig", "MistralForCausalLM", {**SMALL, **ids}),
        "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {**SMALL, **ids}),
        # no sequence-classification class in transformers: align.reward.any_decoder supplies one
        "granite": ("GraniteConfig", "GraniteForCausalLM", {**SMALL, **ids}),
        "cohere": ("CohereConfig", "CohereForCausalLM", {**SMALL, **ids}),
        "ernie4_5": ("Ernie4_5Config", "Ernie4_5ForCausalLM", {**SMALL, "head_dim": 8, **ids}),
        "mixtral": (
            "MixtralConfig",
            "MixtralForCausalLM",
            {**SMALL, "num_local_experts": 2, "num_experts_per_tok": 1, **ids},
        ),
        "phi3": ("Phi3Config", "Phi3ForCausalLM", {**SMALL, "num_key_value_heads": 2, **ids}),
        "gpt2": ("GPT2Config", "GPT2LMHeadModel", {"n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 256, **ids}),
        "opt": (
            "OPTConfig",
            "OPTForCausalLM",
            {
                "hidden_size": 16,
                "ffn_dim": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "max_position_embeddings": 256,
                "word_embed_proj_dim": 16,
                **ids,
            },
        ),
        "gpt_neox": (
            "GPTNeoXConfig",
            "GPTNeoXForCausalLM",
            {
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "max_position_embeddings": 256,
                **ids,
            },
        ),
    }


ARCHITECTURES = tuple(configs(1, {}))


def build(kind: str, folder: Path, tokenizer, seed: int = 0, **overrides) -> Path:
    """Save a tiny random `kind` model + the tokenizer in `folder` (`overrides`: config keys to change)."""
    import torch
    import transformers

    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config_name, model_name, kwargs = configs(len(tokenizer), ids)[kind]
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(getattr(transformers, config_name)(**{**kwargs, **overrides}))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
