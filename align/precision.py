"""The arithmetic of a stage's forward passes: `precision: auto | fp32 | bf16`.

A stage runs inside `precision_scope` (its `run` is decorated with `runs_in_precision`), which
resolves the config's request once, prints it once, and records it for the stage. Every model
align loads has its `forward` wrapped (`autocast_forward`) so that each call, and only the
forward pass, runs under bf16 autocast when the stage's precision is bf16 and the weights are
float32. Weight math outside a forward (merging LoRA into the weights, export, optimizer steps)
and backward passes stay in the weights' dtype, as with accelerate's mixed precision.
"""

from __future__ import annotations

import contextlib
import functools
import types
from contextvars import ContextVar
from typing import Literal

import torch

from align.device import DeviceInfo, detect_device, resolve_dtype

Precision = Literal["fp32", "bf16"]

_STAGE_PRECISION: ContextVar[Precision] = ContextVar("align_stage_precision", default="fp32")
_ANNOUNCED: set[str] = set()


def resolve_precision(requested: str, device: DeviceInfo, weights: torch.dtype = torch.float32) -> Precision:
    """'auto': bf16 where the hardware does bf16 natively (a GPU that supports it, a CPU with
    AVX-512 BF16 / AMX / ARM BF16), fp32 otherwise, so a CPU without it never takes oneDNN's
    emulated path. Weights stored in bf16 compute in bf16 whatever is asked."""
    if weights == torch.bfloat16:
        return "bf16"
    if requested in ("fp32", "bf16"):
        return requested
    return "bf16" if device.bf16 and device.kind in ("cuda", "cpu") else "fp32"


def describe_precision(precision: Precision, device: DeviceInfo, weights: torch.dtype = torch.float32) -> str:
    where = f"{device.name} ({device.kind})"
    if precision == "fp32":
        return "precision fp32" + ("" if device.bf16 else f": {where} has no native bf16")
    if weights == torch.bfloat16:
        return f"precision bf16 (weights stored in bfloat16) on {where}"
    native = "" if device.bf16 else "; this device has no native bf16, so it is emulated and slower than fp32"
    return f"precision bf16 autocast on {where}: master weights and optimizer state float32{native}"


def announce_precision(precision: Precision, device: DeviceInfo, weights: torch.dtype = torch.float32) -> None:
    """Print the choice once per process (a pipeline's stages repeat the same choice)."""
    from align.distributed import say

    line = describe_precision(precision, device, weights)
    if line not in _ANNOUNCED:
        _ANNOUNCED.add(line)
        say(line)


def precision_request(config) -> tuple[str, str]:
    """(precision, dtype) a stage's config asks for: its policy's or model's keys, else its own.
    Under DeepSpeed 'auto' is fp32: the engine's own bf16 / fp16 / torch_autocast sections decide."""
    for owner in (getattr(config, "policy", None), getattr(config, "model", None), config):
        precision = getattr(owner, "precision", None)
        if isinstance(precision, str):
            if precision == "auto" and getattr(config, "deepspeed", None):
                precision = "fp32"
            return precision, getattr(owner, "dtype", "auto")
    return "auto", "auto"


@contextlib.contextmanager
def precision_scope(requested: str = "auto", dtype: str = "auto", device: DeviceInfo | None = None):
    """The block is a stage running in the precision its config asks for (printed once)."""
    device = device or detect_device()
    weights = resolve_dtype(dtype, device)
    precision = resolve_precision(requested, device, weights)
    announce_precision(precision, device, weights)
    token = _STAGE_PRECISION.set(precision)
    try:
        yield precision
    finally:
        _STAGE_PRECISION.reset(token)


def runs_in_precision(run):
    """Decorates a stage's `run(config, ...)`: the stage runs in its config's precision, however it is called."""

    @functools.wraps(run)
    def wrapped(config, *args, **kwargs):
        with precision_scope(*precision_request(config)):
            return run(config, *args, **kwargs)

    return wrapped


def stage_precision() -> Precision:
    return _STAGE_PRECISION.get()


def _autocast_device(module: torch.nn.Module) -> str | None:
    """The device type to autocast `module` on: set when the stage is bf16 and its weights float32."""
    param = next(module.parameters(), None)
    if stage_precision() != "bf16" or param is None or param.dtype != torch.float32:
        return None
    return param.device.type


def forward_autocast(module: torch.nn.Module):
    """bf16 autocast for one forward of `module` when the stage's precision is bf16 and its
    weights are float32; otherwise nothing."""
    device_type = _autocast_device(module)
    if device_type is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)


def autocast_forward(model: torch.nn.Module) -> torch.nn.Module:
    """Wrap `model.forward` so each call runs under `forward_autocast`, and its backbone's too: TRL's
    DPO and KTO replace a model's forward with a fused output layer that calls the backbone
    directly. Bound to the instance (a deepcopy rebinds it to the copy); the signature stays the
    original's (the HF Trainer reads it)."""
    backbone = getattr(model, "base_model", None)
    if isinstance(backbone, torch.nn.Module) and backbone is not model:
        autocast_forward(backbone)
    if getattr(model, "_align_autocast_forward", False):
        return model
    bound = model.forward
    func = bound.__func__ if isinstance(bound, types.MethodType) else type(model).forward

    @functools.wraps(func)
    def forward(self, *args, **kwargs):
        with forward_autocast(self):
            return func(self, *args, **kwargs)

    model.forward = types.MethodType(forward, model)
    model._align_autocast_forward = True
    return model


@contextlib.contextmanager
def reused_weight_casts(module: torch.nn.Module):
    """Within the block (one generate call: a forward per new token), cast each float32 weight to
    bf16 once instead of at every forward; reading the bf16 copy is half the memory traffic, which
    decides decoding speed on a CPU. Autocast caches only leaf tensors that require grad, so frozen
    weights (LoRA's base, the reference) are marked for the block and restored after, and the cache
    is cleared on the way out: no stale copy survives a weight update. Under fp32: nothing."""
    device_type = _autocast_device(module)
    if device_type is None:
        yield
        return
    frozen = [p for p in module.parameters() if not p.requires_grad and p.dtype == torch.float32]
    try:
        for p in frozen:
            p.requires_grad_(True)
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            yield
    finally:
        torch.clear_autocast_cache()
        for p in frozen:
            p.requires_grad_(False)
