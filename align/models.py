"""Load models and tokenizers the same way everywhere: hub id, path, run dir, PEFT adapter or GGUF file.

A later stage may name an earlier stage's run dir or its final/; a PEFT adapter directory
is loaded onto its recorded base model; a .gguf file is read once into a cached model folder
(align.gguf.read). A missing path is an AlignInputError, not a
60-line hub traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from align.adapters import ADAPTER_FILE, adapter_run_base, is_adapter_run, restore_adapters, saved_with_adapters
from align.config.common import ModelConfig
from align.device import DeviceInfo, detect_device, resolve_attn_implementation, resolve_dtype
from align.errors import AlignInputError
from align.gguf.read import gguf_folder, is_gguf
from align.precision import autocast_forward
from align.rundir import FINAL_DIR

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}<|system|>\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'user' %}<|user|>\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}<|assistant|>\n{% generation %}{{ message['content'] }}{{ eos_token }}{% endgeneration %}\n"
    "{% elif message['role'] == 'tool' %}<|tool|>\n{{ message['content'] }}\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""Used for models that ship no chat template; plain-text role markers work with any tokenizer."""


def resolve_model_path(name_or_path: str, dtype: torch.dtype | None = None) -> str:
    """A run dir means its final/; a .gguf file its converted folder (in `dtype` when the caller
    loads its weights, see gguf_folder); anything else is returned as given (hub id or path).

    A local-looking path that holds no model is an input error here, before any hub lookup.
    'models:<name>' (configs resolve it when loaded; a command-line flag may still carry it) is
    the catalog model's file, pulled on first use.
    """
    from align import catalog

    if name_or_path.startswith(catalog.PREFIX):
        name_or_path = catalog.resolve_ref(name_or_path)
    if (problem := model_problem(name_or_path)) is not None:
        raise AlignInputError(problem)
    path = Path(name_or_path).expanduser()
    if is_gguf(name_or_path):
        return str(gguf_folder(path, str(dtype).removeprefix("torch.") if dtype is not None else None))
    if path.is_dir() and (path / FINAL_DIR).is_dir() and not (path / "config.json").exists():
        return str(path / FINAL_DIR)
    return str(path) if path.exists() else name_or_path


def model_problem(model: str) -> str | None:
    """Why `model` cannot be loaded, or None. Hub ids ('org/name') are left to the loader."""
    path = Path(model).expanduser()
    from align.hints import how_to_make

    hint = how_to_make(model) or "check the path"
    if is_gguf(model):
        return None if path.is_file() else f"GGUF file {model} does not exist; check the path (or `align models pull`)"
    if path.is_dir():
        markers = ("config.json", "adapter_config.json", ADAPTER_FILE, FINAL_DIR)
        if any((path / marker).exists() for marker in markers):
            return None
        return f"{model} holds no model (no config.json, adapter_config.json or final/); did the run finish? {hint}"
    local = (
        model.startswith(("/", ".", "~")) or path.parts[0] == "runs" or path.parent.is_dir() and str(path.parent) != "."
    )
    return f"model {model} does not exist; {hint}" if local else None


def is_peft_adapter(path: str) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base(path: str) -> str:
    """The base model an adapter was trained on (as PEFT recorded it)."""
    config = json.loads((Path(path) / "adapter_config.json").read_text())
    return config["base_model_name_or_path"]


def load_tokenizer(config: ModelConfig, model_path: str | None = None) -> PreTrainedTokenizerBase:
    """Tokenizer with a pad token and a chat template (the configured one, the model's, or ours)."""
    source = config.tokenizer or model_path or resolve_model_path(config.name_or_path)
    if is_peft_adapter(source) and not (Path(source) / "tokenizer_config.json").exists():
        source = adapter_base(source)
    elif is_adapter_run(source) and not (Path(source) / "tokenizer_config.json").exists():
        source = adapter_run_base(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise AlignInputError(
            f"cannot load tokenizer from '{source}': {_first_line(exc)}; check model.name_or_path / model.tokenizer"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if config.chat_template:
        tokenizer.chat_template = config.chat_template
    elif not tokenizer.chat_template:
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return tokenizer


def load_causal_lm(
    config: ModelConfig, device: DeviceInfo | None = None, adapter_trainable: bool = False
) -> PreTrainedModel:
    """A causal LM from a hub id, a path, a run dir, a PEFT adapter dir (base + adapter) or a
    bottleneck-adapter run (base + adapters, align.adapters)."""
    device = device or detect_device()
    dtype = resolve_dtype(config.dtype, device)
    path = resolve_model_path(config.name_or_path, dtype)
    kwargs = {
        "dtype": dtype,
        "attn_implementation": resolve_attn_implementation(config.attn_implementation, device),
        "trust_remote_code": config.trust_remote_code,
    }
    if is_peft_adapter(path):
        from peft import PeftModel

        base = _from_pretrained(adapter_base(path), kwargs)
        return PeftModel.from_pretrained(base, path, is_trainable=adapter_trainable)
    if is_adapter_run(path):  # bottleneck adapters saved alone, beside a reference to their base
        return restore_adapters(_from_pretrained(adapter_run_base(path), kwargs), path)
    return restore_adapters(_from_pretrained(path, kwargs), path)  # a whole model saved with adapters in it


def _from_pretrained(path: str, kwargs: dict) -> PreTrainedModel:
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    if saved_with_adapters(path):  # its adapter weights are "unused" until restore_adapters puts them back
        logging.set_verbosity_error()
    try:
        return autocast_forward(AutoModelForCausalLM.from_pretrained(path, **kwargs))
    except (OSError, ValueError) as exc:
        raise AlignInputError(
            f"cannot load model '{path}': {_first_line(exc)}; give a local model folder, an align run dir, "
            "or a hub id (the hub is unreachable offline)"
        ) from None
    finally:
        logging.set_verbosity(verbosity)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def context_length(model: torch.nn.Module) -> int | None:
    """Positions the model can attend over (max_position_embeddings, GPT-2's n_positions, ...)."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def trainable_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the trainable parameters by name: what a checkpoint or a best-weights copy keeps."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, printed at the start of every training stage."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
