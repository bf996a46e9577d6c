"""A .gguf file as a model folder: read once through transformers' GGUF support, dequantized,
saved as safetensors with its tokenizer and chat template, and cached.

Why a folder: transformers marks a GGUF-loaded model as quantized and refuses to save it, and
dequantizing takes seconds to minutes; a cached folder makes a GGUF model load like any other
(reward backbone, critic, reference, PEFT base), and what a stage writes is a normal folder.
The cache key is the file's absolute path, size and modification time, so an edited or
replaced file is converted again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from align.cache import cache_dir
from align.errors import AlignInputError

SOURCE_FILE = "gguf_source.json"
"""Written in every converted folder: which file it came from (and how to tell it changed)."""


def is_gguf(name_or_path: str) -> bool:
    return str(name_or_path).lower().endswith(".gguf")


def cache_root() -> Path:
    return cache_dir("gguf")


def gguf_folder(path: str | Path, dtype: str | None = None) -> Path:
    """The converted folder of the GGUF file at `path`, converting it first if needed.

    `dtype` (float32, bfloat16, float16) is the type the weights are dequantized to and saved in,
    so a 7B Q4 file becomes ~14 GB of bfloat16 instead of ~28 GB of float32 when the model is
    loaded in bfloat16 anyway. None: a conversion already made in any type, else this machine's
    default (bfloat16 on a GPU that supports it, float32 elsewhere), as `model.dtype: auto` loads."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise AlignInputError(f"GGUF file {path} does not exist; check model.name_or_path")
    stat = path.stat()
    source = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    key = hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:16]

    def folder_for(name: str) -> Path:  # float32 folders keep the name they had before dtypes
        return cache_root() / (f"{path.stem}-{key}" if name == "float32" else f"{path.stem}-{key}-{name}")

    if dtype is None:
        made = [folder_for(name) for name in DTYPES if (folder_for(name) / SOURCE_FILE).is_file()]
        if made:
            return made[0]
        dtype = default_dtype()
    if dtype not in DTYPES:
        raise AlignInputError(f"GGUF conversion dtype '{dtype}': choose one of {', '.join(DTYPES)}")
    folder = folder_for(dtype)
    if (folder / SOURCE_FILE).is_file():
        return folder
    _convert(path, folder, source, dtype)
    return folder


DTYPES = ("float32", "bfloat16", "float16")


def default_dtype() -> str:
    """What `model.dtype: auto` resolves to on this machine."""
    from align.device import detect_device, resolve_dtype

    return str(resolve_dtype("auto", detect_device())).removeprefix("torch.")


def describe(path: Path) -> dict:
    """Architecture, quantization types and tensor count from the header, or an input error
    naming the file (a truncated or corrupt file, an architecture transformers cannot read)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    try:
        from gguf import GGUFReader
    except ImportError:
        raise AlignInputError("reading a .gguf file needs the 'gguf' package (pip install gguf)") from None
    try:
        reader = GGUFReader(str(path))
        architecture = _field(reader, "general.architecture")
        types = sorted({tensor.tensor_type.name for tensor in reader.tensors})
    except Exception as exc:  # gguf raises ValueError, struct/numpy errors or IndexError on a damaged file
        raise AlignInputError(
            f"{path} is not a readable GGUF file ({type(exc).__name__}: {str(exc)[:200]}); "
            "is it truncated? download or export it again"
        ) from None
    if architecture not in GGUF_SUPPORTED_ARCHITECTURES:
        raise AlignInputError(
            f"{path}: GGUF architecture '{architecture}' cannot be read by transformers; readable architectures: "
            f"{', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))}"
        )
    return {"architecture": architecture, "tensor_types": types, "tensors": len(reader.tensors)}


def _field(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        raise ValueError(f"metadata key {key} missing")
    return field.contents()


def _convert(path: Path, folder: Path, source: dict, dtype: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    header = describe(path)
    print(
        f"Reading {path.name} ({header['architecture']}, {'/'.join(header['tensor_types'])}) as {dtype} into {folder} ..."
    )
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=getattr(torch, dtype))
    except Exception as exc:  # an unsupported quantization or tokenizer surfaces as many exception types
        raise AlignInputError(
            f"{path}: transformers could not read this GGUF file ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}); tensor types in it: "
            f"{', '.join(header['tensor_types'])}. Supported: the architectures transformers reads from GGUF and "
            "the quantizations the gguf package dequantizes (F32, F16, BF16, Q4_0/1, Q5_0/1, Q8_0, K-quants)"
        ) from None
    finally:
        logging.set_verbosity(verbosity)
    # A GGUF-loaded model carries a quantizer that refuses save_pretrained; the weights are plain tensors now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = str(path)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / SOURCE_FILE).write_text(json.dumps({**source, **header, "dtype": dtype}, indent=2), encoding="utf-8")
    try:
        tmp.rename(folder)  # atomic: a second process converting the same file keeps the first folder
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
