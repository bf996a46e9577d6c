"""Detect the accelerator once and derive the weights' dtype and trainer flags from it.

GPU-only features (4-bit, flash attention) and native bf16 (a GPU's flag, a CPU's AVX-512 BF16 /
AMX / ARM BF16) are decided here at run time, so configs stay portable between a laptop CPU and
a cluster, and tests never need a GPU. What the forward passes compute in is align.precision.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import torch

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")
"""CPU capabilities (torch.cpu.get_capabilities) that run bf16 matmuls natively: AVX-512 BF16 and AMX
on x86, the BF16 extension on ARM. Without one, oneDNN emulates bf16 and it is slower than fp32."""


@dataclass(frozen=True)
class DeviceInfo:
    kind: str  # "cuda" | "mps" | "cpu"
    name: str
    count: int
    bf16: bool
    fp16: bool

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "count": self.count, "bf16": self.bf16, "fp16": self.fp16}


def detect_device() -> DeviceInfo:
    if torch.cuda.is_available():
        return DeviceInfo(
            kind="cuda",
            name=torch.cuda.get_device_name(0),
            count=torch.cuda.device_count(),
            bf16=torch.cuda.is_bf16_supported(),
            fp16=True,
        )
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return DeviceInfo(kind="mps", name="Apple MPS", count=1, bf16=False, fp16=True)
    return DeviceInfo(kind="cpu", name=cpu_name(), count=1, bf16=cpu_has_native_bf16(), fp16=False)


def cpu_capabilities() -> dict:
    try:
        return dict(torch.cpu.get_capabilities())
    except (AttributeError, RuntimeError):  # an older torch: no capability table, so no bf16 claimed
        return {}


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity, which a container or `taskset` narrows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_name() -> str:
    return str(cpu_capabilities().get("cpu_name") or "cpu")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (see NATIVE_BF16_FLAGS)."""
    capabilities = cpu_capabilities()
    return any(capabilities.get(flag) is True for flag in NATIVE_BF16_FLAGS)


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(requested: str, device: DeviceInfo) -> torch.dtype:
    """'auto' -> bfloat16 where the GPU supports it, else float32 (CPU training in half is slow and lossy)."""
    if requested != "auto":
        return _DTYPES[requested]
    return torch.bfloat16 if device.kind == "cuda" and device.bf16 else torch.float32


def precision_flags(dtype: torch.dtype) -> dict[str, bool]:
    """The bf16/fp16 flags for HF TrainingArguments (TRL defaults bf16=True, wrong on CPU). They
    follow the weights' dtype; bf16 autocast over float32 weights is align.precision's, so
    DeepSpeed keeps float32 weights on CPU."""
    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}


def resolve_attn_implementation(requested: str, device: DeviceInfo) -> str | None:
    """'auto': flash attention when installed on CUDA, else None, which lets transformers pick the
    architecture's own supported kernel (SDPA where it has one, eager otherwise: Gemma-2 has no
    SDPA path, and forcing one made it unloadable)."""
    if requested != "auto":
        return requested
    if device.kind == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return None
