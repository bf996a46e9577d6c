"""Export a trained model as a GGUF file (plus an Ollama Modelfile) that llama.cpp, Ollama and
LM Studio run, and that transformers reads back.

What llama.cpp's own converter does for the Llama family, for the models align trains:
- metadata under llama.cpp's keys (shape, RoPE base, norm epsilon), the file type;
- tensors renamed to llama.cpp's names (gguf.get_tensor_name_map); for the `llama` architecture
  the query and key projections are permuted to llama.cpp's rotary layout (transformers' reader
  undoes it); norms and biases stay float32, matrices take the requested type (q8_0 falls back to
  f16 for a matrix whose rows are not a multiple of its 32-value block);
- the byte-level BPE tokenizer (tokens, types, merges, special ids) and the chat template.

Supported: Llama (SmolLM2, Llama 3), Mistral (written as `llama`, as llama.cpp does) and Qwen2,
each with a byte-level BPE tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from align.errors import AlignInputError

ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}
"""transformers model_type -> llama.cpp architecture."""
DTYPES = ("f32", "f16", "bf16", "q8_0")
MODELFILE = "Modelfile"


def export_gguf(model, tokenizer, out: Path, dtype: str = "f16", name: str | None = None) -> Path:
    """Write `model` (a transformers causal LM of a supported architecture) and `tokenizer` to `out`."""
    import gguf

    if dtype not in DTYPES:
        raise AlignInputError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    config = model.config
    arch = ARCHITECTURES.get(config.model_type)
    if arch is None:
        raise AlignInputError(
            f"GGUF export supports the architectures {', '.join(sorted(ARCHITECTURES))} (Llama, SmolLM2, Mistral, "
            f"Qwen2), not '{config.model_type}'; the run dir's final/ is left as it is"
        )
    vocab = _vocabulary(tokenizer, config.vocab_size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rope_scaling = _rope_scaling(config)  # refused before anything is written
    tmp = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), arch)
    try:
        _write_metadata(writer, config, dtype, name or f"{config.model_type} {out.stem}", rope_scaling)
        _write_tokenizer(writer, tokenizer, vocab)
        _write_tensors(writer, model, arch, dtype)
        if rope_scaling.get("rope_type") == "llama3":
            writer.add_tensor("rope_freqs.weight", llama3_rope_factors(config, rope_scaling).astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)  # no half-written file left beside the export
        raise
    tmp.replace(out)  # a reader never sees a half-written file
    return out


def _rope_scaling(config) -> dict:
    """The model's RoPE scaling if llama.cpp's reader is given what it needs for it ({} for none):
    linear (a factor) and Llama 3.1's llama3 (per-dimension factors in a rope_freqs tensor).
    Any other kind is refused: written without it, the model would be wrong past short contexts."""
    scaling = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind in (None, "default"):
        return {}
    if kind in ("linear", "llama3"):
        return {**scaling, "rope_type": kind}
    raise AlignInputError(
        f"GGUF export: RoPE scaling '{kind}' is not written by align's exporter (it writes linear and llama3); "
        "convert this model with llama.cpp's convert_hf_to_gguf.py instead; the run dir's final/ is left as it is"
    )


def llama3_rope_factors(config, scaling: dict) -> np.ndarray:
    """Llama 3.1's RoPE scaling (`scaling`, as `_rope_scaling` found it) as one factor per rotary
    frequency (llama.cpp divides each frequency by its factor): 1 for short wavelengths, `factor`
    for long ones, a smooth blend between `original_max_position_embeddings / high_freq_factor`
    and `/ low_freq_factor`."""
    heads = config.num_attention_heads
    dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    base = float(scaling.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
    factor, low, high = float(scaling["factor"]), float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
    context = float(scaling["original_max_position_embeddings"])
    wavelengths = 2 * np.pi * base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    smooth = (context / wavelengths - low) / (high - low)
    blended = 1.0 / ((1 - smooth) / factor + smooth)
    return np.where(wavelengths < context / high, 1.0, np.where(wavelengths > context / low, factor, blended))


def _write_metadata(writer, config, dtype: str, name: str, rope_scaling: dict) -> None:
    import gguf

    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_parameters", None) or {}
    # Mistral is written as `llama`, as llama.cpp does, and is read back by transformers as a Llama
    # (the same computation; a name of exactly "mistral" would trip transformers 5's GGUF reader)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    if rope_scaling.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope_scaling["factor"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    file_types = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }
    writer.add_file_type(file_types[dtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _vocabulary(tokenizer, vocab_size: int) -> dict:
    """Tokens by id (byte-level spelling), their llama.cpp types, and the merges."""
    import gguf

    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    model = backend.get("model", {})
    byte_level = "ByteLevel" in json.dumps(backend.get("pre_tokenizer")) + json.dumps(backend.get("decoder"))
    if model.get("type") != "BPE" or not byte_level:
        raise AlignInputError(
            "GGUF export writes byte-level BPE tokenizers (Llama 3, Qwen2, SmolLM2, GPT-2 style); this model's "
            f"tokenizer is {model.get('type')} without byte-level pre-tokenization (sentencepiece-style): "
            "convert it with llama.cpp's convert_hf_to_gguf.py"
        )
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = {t.content: t.special for t in tokenizer.added_tokens_decoder.values()}
    beyond = {index: token for index, token in by_id.items() if index >= vocab_size}
    if any(token not in added for token in beyond.values()):
        raise AlignInputError(
            f"the tokenizer has {len(by_id)} tokens, the model's embedding {vocab_size} rows: they do not belong together"
        )
    # An added token past the embedding (a tokenizer class's default <|endoftext|>, say) has no row:
    # the model can never read or write it, so the file leaves it out.
    tokens, types = [], []
    for index in range(vocab_size):
        token = by_id.get(index)
        if token is None:  # an embedding row no token uses (vocab padded to a multiple of 64, say)
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(token)
            kind = added.get(token)
            types.append(
                gguf.TokenType.NORMAL
                if kind is None
                else gguf.TokenType.CONTROL
                if kind
                else gguf.TokenType.USER_DEFINED
            )
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return {"tokens": tokens, "types": types, "merges": merges, "pre": _pre_tokenizer_name(backend)}


def _pre_tokenizer_name(backend: dict) -> str:
    """llama.cpp's name for how text is split before BPE (it picks its regex by this name)."""
    text = json.dumps(backend.get("pre_tokenizer"))
    if '"Digits"' in text and '"individual_digits": true' in text:
        return "smollm"  # single digits, then GPT-2's byte-level split
    if "\\\\p{N}{1,3}" in text or "\\p{N}{1,3}" in text:
        return "llama-bpe"
    if "\\\\p{N}|" in text or "\\p{N}|" in text:
        return "qwen2"
    split = backend.get("pre_tokenizer") or {}
    if split.get("type") == "ByteLevel" and split.get("use_regex", True):
        return "gpt-2"  # GPT-2's own split
    raise AlignInputError(
        f"GGUF export: the tokenizer splits text with a pre-tokenizer llama.cpp would not reproduce ({text[:160]}); "
        "align writes smollm, llama-bpe, qwen2 and gpt-2 splits; convert with llama.cpp's convert_hf_to_gguf.py"
    )


def _write_tokenizer(writer, tokenizer, vocab: dict) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab["pre"])
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types(vocab["types"])
    writer.add_token_merges(vocab["merges"])
    for token_id, add in (
        (tokenizer.bos_token_id, writer.add_bos_token_id),
        (tokenizer.eos_token_id, writer.add_eos_token_id),
        (tokenizer.pad_token_id, writer.add_pad_token_id),
    ):
        if token_id is not None:
            add(int(token_id))
    probe = tokenizer("a").input_ids
    writer.add_add_bos_token(bool(probe) and probe[0] == tokenizer.bos_token_id)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _write_tensors(writer, model, arch: str, dtype: str) -> None:
    import gguf

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config.num_hidden_layers)
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when output.weight is absent
        base, _, suffix = hf_name.rpartition(".")
        gguf_base = names.get_name(base)
        if gguf_base is None:
            if hf_name.endswith("rotary_emb.inv_freq"):
                continue
            raise AlignInputError(f"GGUF export: no llama.cpp name for tensor {hf_name}")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        # llama.cpp's rotary layout applies to a projection's bias as to its weight rows
        if arch == "llama" and base.endswith("self_attn.q_proj") and suffix in ("weight", "bias"):
            data = _permute(data, heads, heads)
        elif arch == "llama" and base.endswith("self_attn.k_proj") and suffix in ("weight", "bias"):
            data = _permute(data, heads, kv_heads)
        packed, extra = _encode(data, dtype)
        writer.add_tensor(f"{gguf_base}.{suffix}", packed, **extra)


def _permute(weights: np.ndarray, n_head: int, n_head_kv: int) -> np.ndarray:
    """llama.cpp's rotary layout for q/k rows (the inverse of transformers' reverse permutation)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    rows = weights.shape[0]
    return weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _encode(data: np.ndarray, dtype: str) -> tuple[np.ndarray, dict]:
    """(bytes-or-array, add_tensor kwargs): vectors stay f32; matrices take `dtype`."""
    import gguf
    from gguf import GGMLQuantizationType as Q

    if data.ndim < 2 or dtype == "f32":
        return np.ascontiguousarray(data, dtype=np.float32), {}
    if dtype == "f16" or (dtype == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[Q.Q8_0][0] != 0):
        return np.ascontiguousarray(data, dtype=np.float16), {}
    qtype = Q.BF16 if dtype == "bf16" else Q.Q8_0
    packed = gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype)
    return packed, {"raw_shape": packed.shape, "raw_dtype": qtype}


def ollama_modelfile(gguf_name: str, tokenizer) -> str:
    """An Ollama Modelfile: FROM the file, a TEMPLATE equivalent to the chat template, stop tokens."""
    template = tokenizer.chat_template or ""
    stops = [tokenizer.eos_token] if tokenizer.eos_token else []
    if "<|im_start|>" in template:  # ChatML (SmolLM2, Qwen)
        go = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
        stops += ["<|im_start|>", "<|im_end|>"]
        system = _default_system(tokenizer)
    else:  # any other template: rendered once with Ollama's own placeholders as the message texts
        go = _rendered_template(tokenizer)
        system = None
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{go}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{s}"' for s in dict.fromkeys(stops)]
    return "\n".join(lines) + "\n"


def _default_system(tokenizer) -> str | None:
    """The system prompt a template adds when the conversation has none (SmolLM2's does)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    if text.startswith("<|im_start|>system\n"):
        return text[len("<|im_start|>system\n") :].split("<|im_end|>", 1)[0]
    return None


def _rendered_template(tokenizer) -> str:
    try:
        prompt = tokenizer.apply_chat_template(
            [{"role": "system", "content": "{{ .System }}"}, {"role": "user", "content": "{{ .Prompt }}"}],
            tokenize=False,
            add_generation_prompt=True,
        )
    except Exception:  # a template without a system role
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": "{{ .Prompt }}"}], tokenize=False, add_generation_prompt=True
        )
    return prompt + "{{ .Response }}" + (tokenizer.eos_token or "")
