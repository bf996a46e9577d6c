"""Update modes -> which parameters train: full, partial, LoRA, QLoRA, bottleneck adapters,
prompt and prefix tuning, feature extraction (only the output head on a frozen backbone).

One place maps `UpdateConfig` onto PEFT objects or `requires_grad` flags, for causal LMs
(SFT, PPO) and sequence-classification models (the reward model) alike: pass
`task_type="SEQ_CLS"` and the classification head stays trainable in every mode.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from align.adapters import add_adapters
from align.architecture import transformer_blocks, unwrapped
from align.config.common import UpdateConfig
from align.device import DeviceInfo
from align.errors import AlignInputError
from align.models import context_length

# Attention + MLP projections per architecture (model_type). Adapting the MLP as well as
# attention is what the QLoRA paper found necessary to match full fine-tuning.
LORA_TARGETS: dict[str, list[str]] = {
    **{
        model_type: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        for model_type in (
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen3",
            "gemma",
            "gemma2",
            "gemma3_text",
            "olmo",
            "olmo2",
            "granite",
        )
    },
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "gptj": ["q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "falcon": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "bloom": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}

HEAD_NAMES = ("lm_head", "score", "classifier", "embed_out")  # output heads across architectures


def default_lora_targets(model: nn.Module) -> list[str] | str:
    """The architecture's attention+MLP projections; PEFT's own map next; else every linear layer."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in LORA_TARGETS:
        return list(LORA_TARGETS[model_type])
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_MAP,
    )

    return PEFT_MAP.get(model_type, "all-linear")


def check_update_supported(update: UpdateConfig, device: DeviceInfo) -> None:
    """Fail before loading anything when a mode cannot run here (QLoRA needs CUDA + bitsandbytes)."""
    if update.mode != "qlora":
        return
    if device.kind != "cuda":
        raise AlignInputError(
            f"update.mode = qlora needs a CUDA GPU: bitsandbytes 4-bit weights have no kernels for '{device.kind}'. "
            "Use update.mode=lora here (same adapter, full-precision base)."
        )
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise AlignInputError(
            "update.mode = qlora needs the bitsandbytes package: pip install bitsandbytes (or use update.mode=lora)"
        )


def quantization_kwargs(update: UpdateConfig, dtype: torch.dtype) -> dict[str, Any]:
    """Extra from_pretrained kwargs for QLoRA: 4-bit NF4 base with double quantization; {} otherwise."""
    if update.mode != "qlora":
        return {}
    from transformers import BitsAndBytesConfig

    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    }


def peft_config(
    update: UpdateConfig, model: nn.Module, task_type: str = "CAUSAL_LM", tokenizer_path: str | None = None
):
    """The PEFT config of an adapter mode (lora, qlora, prompt_tuning, prefix_tuning); None for full/partial."""
    from peft import (
        LoraConfig,
        PrefixTuningConfig,
        PromptTuningConfig,
        PromptTuningInit,
    )

    if update.mode in ("lora", "qlora"):
        targets = update.lora.target_modules or default_lora_targets(model)
        return LoraConfig(
            r=update.lora.r,
            lora_alpha=update.lora.alpha,
            lora_dropout=update.lora.dropout,
            target_modules=targets,
            task_type=task_type,
        )
    if update.mode == "prompt_tuning":
        init_text = update.prompt.init_text
        return PromptTuningConfig(
            task_type=task_type,
            num_virtual_tokens=update.prompt.num_virtual_tokens,
            prompt_tuning_init=PromptTuningInit.TEXT if init_text else PromptTuningInit.RANDOM,
            prompt_tuning_init_text=init_text,
            tokenizer_name_or_path=tokenizer_path if init_text else None,
        )
    if update.mode == "prefix_tuning":
        return PrefixTuningConfig(task_type=task_type, num_virtual_tokens=update.prompt.num_virtual_tokens)
    return None


def check_sequence_fits(
    model: nn.Module, update: UpdateConfig, max_length: int, where: str = "data.max_length"
) -> None:
    """Prompt and prefix tuning put virtual tokens before every sequence; with them it must still
    fit the model's context (GPT-2 otherwise fails deep inside with 'index out of range')."""
    limit = context_length(model)
    virtual = update.prompt.num_virtual_tokens if update.mode in ("prompt_tuning", "prefix_tuning") else 0
    if limit is not None and max_length + virtual > limit:
        extra = f" + update.prompt.num_virtual_tokens {virtual}" if virtual else ""
        raise AlignInputError(
            f"{where} {max_length}{extra} = {max_length + virtual} positions exceed the context of "
            f"{type(model).__name__} ({limit}); lower {where} to {limit - virtual}"
            + (" or use fewer virtual tokens" if virtual else "")
        )


def freeze_for_partial(model: nn.Module, update: UpdateConfig) -> list[str]:
    """Train the last N blocks, the final norm, the head (unless tied to the input embeddings) and named modules.

    A head tied to the embeddings is left frozen: training it would change every token's
    input embedding too, which is not "the last blocks". Returns the trainable names.
    """
    settings = update.partial
    stack_name, blocks = transformer_blocks(model)
    n = min(settings.trainable_layers, len(blocks))
    prefixes = [f"{stack_name}.{i}." for i in range(len(blocks) - n, len(blocks))]
    if n > 0:
        prefixes += final_norm_prefixes(model, stack_name)
    embeddings = model.get_input_embeddings()
    names = [name for name, _ in model.named_parameters()]
    unmatched = [s for s in settings.trainable_modules if not any(s in name for name in names)]
    if unmatched:
        raise AlignInputError(
            f"update.partial.trainable_modules: no parameter name contains {', '.join(map(repr, unmatched))}; "
            f"names look like {names[0]!r} ... {names[-1]!r}"
        )
    trainable = []
    for name, param in model.named_parameters():
        head = any(h in name.split(".") for h in HEAD_NAMES) and param is not getattr(embeddings, "weight", None)
        train = any(name.startswith(p) for p in prefixes) or head or any(s in name for s in settings.trainable_modules)
        param.requires_grad_(train)
        if train:
            trainable.append(name)
    return trainable


def final_norm_prefixes(model: nn.Module, stack_name: str) -> list[str]:
    """Siblings of the block stack that hold parameters and are not embeddings: the final norm (model.norm, ln_f)."""
    parent_name, _, stack_attr = stack_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    found = []
    for child_name, child in parent.named_children():
        if child_name == stack_attr or isinstance(child, nn.Embedding) or not any(True for _ in child.parameters()):
            continue
        if child_name in HEAD_NAMES or isinstance(child, nn.Linear):
            continue
        found.append(f"{parent_name + '.' if parent_name else ''}{child_name}.")
    return found


def apply_update_mode(
    model: nn.Module, update: UpdateConfig, task_type: str = "CAUSAL_LM", tokenizer_path: str | None = None
) -> nn.Module:
    """Set what trains; returns the model to train (a PeftModel for adapter modes), checked by one
    forward and backward on a two-token batch (`check_one_step`).

    task_type: "CAUSAL_LM" or "SEQ_CLS" (PEFT then also trains the classification head).
    """
    trained = _apply_update_mode(model, update, task_type, tokenizer_path)
    check_one_step(trained, update, task_type)
    return trained


UNSUPPORTED_HINT = {
    "prefix_tuning": "update.mode: lora (or prompt_tuning)",
    "prompt_tuning": "update.mode: lora",
    "adapter": "update.mode: lora",
    "partial": "update.mode: lora or full",
}


def check_one_step(model: nn.Module, update: UpdateConfig, task_type: str) -> None:
    """A forward and backward on two tokens, so that an (architecture, update mode) pair that
    cannot train (e.g. prefix tuning on a model whose attention PEFT's prefix does not fit) is exit
    2 naming both before any data is read, not a shape error mid-run. Eval mode and a forked RNG:
    the training run draws the same random numbers as without the check."""
    from align.generation import zero3_sharded

    if zero3_sharded(model) or not any(p.requires_grad for p in model.parameters()):
        return
    base = unwrapped(model)
    config = base.config
    architecture = (getattr(config, "architectures", None) or [type(base).__name__])[0]
    device = next(model.parameters()).device
    ids = torch.tensor([[1, 2]], device=device) % max(int(getattr(config, "vocab_size", 3) or 3), 3)
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]):
            model.eval()
            labels = {"labels": ids} if task_type == "CAUSAL_LM" else {}  # a score head: its output's sum
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), **labels)
            loss = out.loss if getattr(out, "loss", None) is not None else out.logits.float().sum()
            loss.backward()
    except (RuntimeError, ValueError, TypeError, IndexError, AttributeError) as exc:
        reason = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
        instead = UNSUPPORTED_HINT.get(
            update.mode, "another update.mode (lora works on every architecture align lists)"
        )
        raise AlignInputError(
            f"update.mode = {update.mode} does not train {architecture} ({config.model_type}): one forward and "
            f"backward on two tokens failed ({type(exc).__name__}: {reason}); use {instead}"
        ) from None
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def _apply_update_mode(
    model: nn.Module, update: UpdateConfig, task_type: str = "CAUSAL_LM", tokenizer_path: str | None = None
) -> nn.Module:
    if update.mode == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    if update.mode == "partial":
        freeze_for_partial(model, update)
        if task_type == "SEQ_CLS":  # the new scoring head must learn in every mode
            train_head(model)
        return model
    if update.mode == "adapter":
        model.requires_grad_(False)
        names = set(add_adapters(model, update.adapter))
        for name, param in model.named_parameters():
            param.requires_grad_(name in names)
        if task_type == "SEQ_CLS":
            train_head(model)
        return model
    if update.mode == "feature_extraction":
        model.requires_grad_(False)
        if task_type == "CAUSAL_LM":
            untie_output_head(model)
        train_head(model)
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    if update.mode == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    try:
        return get_peft_model(model, peft_config(update, model, task_type, tokenizer_path))
    except ValueError as exc:  # e.g. target modules not found in the model
        raise AlignInputError(f"update.mode = {update.mode}: {str(exc).splitlines()[0][:300]}") from None


def train_head(model: nn.Module) -> list[str]:
    """Make the output head (lm_head, score, classifier...) trainable; returns its parameter names."""
    names = []
    for name, param in model.named_parameters():
        if any(h in name.split(".") for h in HEAD_NAMES):
            param.requires_grad_(True)
            names.append(name)
    if not names:
        raise AlignInputError(
            f"cannot find the output head of {type(model).__name__} (looked for {', '.join(HEAD_NAMES)})"
        )
    return names


def untie_output_head(model: nn.Module) -> None:
    """Give a head tied to the input embeddings its own copy, so training it leaves the backbone
    (embeddings included) frozen; the saved config says the two are separate from now on."""
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or embeddings is None or head.weight is not embeddings.weight:
        return
    head.weight = nn.Parameter(embeddings.weight.detach().clone())
    model.config.tie_word_embeddings = False
    text_config = getattr(model.config, "get_text_config", lambda: None)()
    if text_config is not None:
        text_config.tie_word_embeddings = False


def describe_trainable(model: nn.Module) -> str:
    """'trainable 12,345 of 1,234,567 parameters (1.00%)' — printed at the start of training."""
    from align.models import count_parameters

    trainable, total = count_parameters(model)
    return f"trainable {trainable:,} of {total:,} parameters ({100.0 * trainable / max(total, 1):.2f}%)"
