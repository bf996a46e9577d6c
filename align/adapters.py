"""Bottleneck adapters (Houlsby et al. 2019; parallel: He et al. 2022): a small module
down-projection -> non-linearity -> up-projection, added to a transformer sub-layer's output.

    sequential  y' = y + A(y)           after the sub-layer (Houlsby, Pfeiffer)
    parallel    y' = y + A(x)           beside it, reading the sub-layer's input x
    hybrid      y' = y + A1(y) + A2(x)  both

at the attention and/or feed-forward sub-layer of every block (`location`), optionally with
a layer norm on the adapter's input. The up-projection starts at zero, so a model with fresh
adapters computes exactly what it computed before.

Why our own module: the `adapters` package pins transformers 4.x, and PEFT has no bottleneck
adapters. The adapter modules are children of each block (`bottleneck_<location>_<kind>`), so
the base model's parameter names stay as they are; a forward hook object on the sub-layer adds
their output (an object rather than a closure, so a deep copy of the model, such as PPO's frozen
reference, copies the hook together with the adapters it calls). The settings are recorded in
`model.config.bottleneck_adapter`, so a model saved whole (PPO's final/, a reward model) reloads
with its adapters; an SFT run saves the adapters alone (ADAPTER_FILE + WEIGHTS_FILE) beside a
reference to its base model. Adapters have a non-linearity, so they cannot be merged into the
weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from align.architecture import transformer_blocks
from align.config.common import AdapterSettings
from align.errors import AlignInputError

ADAPTER_FILE = "bottleneck_adapter.json"  # {"base_model": path, "settings": {...}} of an adapter-only save
WEIGHTS_FILE = "bottleneck_adapter.safetensors"
CONFIG_KEY = "bottleneck_adapter"  # model.config attribute that records the settings
PREFIX = "bottleneck_"

# Sub-layer attribute names of a transformer block, per location, across architectures.
SUBLAYERS: dict[str, tuple[str, ...]] = {
    "attention": ("self_attn", "attn", "attention", "self_attention"),
    "feed_forward": ("mlp", "feed_forward", "block_sparse_moe", "ffn"),
}
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class Bottleneck(nn.Module):
    """(…, hidden) -> (…, hidden): [layer norm] -> down -> non-linearity -> up (zero at start)."""

    def __init__(self, hidden: int, size: int, non_linearity: str, layer_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(hidden) if layer_norm else None
        self.down = nn.Linear(hidden, size)
        self.act = ACTIVATIONS[non_linearity]()
        self.up = nn.Linear(size, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x) if self.norm is not None else x
        return self.up(self.act(self.down(h.to(self.down.weight.dtype)))).to(x.dtype)


class AdapterHook:
    """Forward hook (with kwargs) on a sub-layer: add the sequential and/or parallel adapter's output."""

    def __init__(self, sequential: Bottleneck | None, parallel: Bottleneck | None):
        self.sequential, self.parallel = sequential, parallel

    def __call__(self, module, args, kwargs, output):
        y = output[0] if isinstance(output, tuple) else output
        delta = None
        if self.sequential is not None:
            delta = self.sequential(y)
        if self.parallel is not None:
            x = args[0] if args else kwargs.get("hidden_states")
            par = self.parallel(x)
            delta = par if delta is None else delta + par
        y = y + delta
        return (y, *output[1:]) if isinstance(output, tuple) else y


def hidden_size(model: nn.Module) -> int:
    config = model.config
    for name in ("hidden_size", "n_embd", "d_model"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    raise AlignInputError(f"update.mode = adapter: cannot tell the hidden size of {type(model).__name__}")


def bottleneck_size(settings: AdapterSettings, hidden: int) -> int:
    size = settings.bottleneck_size or int(hidden // settings.reduction_factor)
    if size < 1:
        raise AlignInputError(
            f"update.adapter.reduction_factor = {settings.reduction_factor} leaves a bottleneck of {size} units "
            f"for hidden size {hidden}; use a reduction_factor of at most {hidden} or set update.adapter.bottleneck_size"
        )
    return size


def find_sublayer(block: nn.Module, location: str) -> tuple[str, nn.Module]:
    for name in SUBLAYERS[location]:
        if isinstance(getattr(block, name, None), nn.Module):
            return name, getattr(block, name)
    children = ", ".join(name for name, _ in block.named_children())
    raise AlignInputError(
        f"update.adapter.location: {type(block).__name__} has no {location} sub-layer to put an adapter on "
        f"(looked for {', '.join(SUBLAYERS[location])}; it has {children}); "
        f"use update.adapter.location=[{'feed_forward' if location == 'attention' else 'attention'}] or another update.mode"
    )


def add_adapters(model: nn.Module, settings: AdapterSettings) -> list[str]:
    """Insert fresh adapters into every block of `model` (a causal LM or sequence classifier);
    returns their parameter names. Checks every block before changing any."""

    if getattr(model.config, CONFIG_KEY, None):
        raise AlignInputError("this model already has bottleneck adapters (a saved adapter run); train it as it is")
    hidden = hidden_size(model)
    size = bottleneck_size(settings, hidden)
    stack_name, blocks = transformer_blocks(model)
    plan = [(block, [find_sublayer(block, loc) for loc in settings.location]) for block in blocks]
    reference = next(model.parameters())
    kinds = {"sequential": ("sequential",), "parallel": ("parallel",), "hybrid": ("sequential", "parallel")}
    for block, sublayers in plan:
        for location, (_, sublayer) in zip(settings.location, sublayers):
            made = {}
            for kind in kinds[settings.placement]:
                module = Bottleneck(hidden, size, settings.non_linearity, settings.layer_norm)
                made[kind] = module.to(device=reference.device, dtype=torch.float32)
                block.add_module(f"{PREFIX}{location}_{kind}", made[kind])
            sublayer.register_forward_hook(AdapterHook(made.get("sequential"), made.get("parallel")), with_kwargs=True)
    setattr(model.config, CONFIG_KEY, settings.model_dump())
    return [name for name, _ in model.named_parameters() if is_adapter_key(name)]


def is_adapter_key(name: str) -> bool:
    return any(part.startswith(PREFIX) for part in name.split("."))


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if is_adapter_key(k)}


def save_adapters(
    model: nn.Module, folder: Path, base_model: str, state: dict[str, torch.Tensor] | None = None
) -> None:
    """The adapters alone (a few MB at most) + which base model they sit on. `state`: a full state
    dict gathered elsewhere (ZeRO-3); default the model's own."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = (
        adapter_state(model)
        if state is None
        else {k: v.detach().cpu().contiguous() for k, v in state.items() if is_adapter_key(k)}
    )
    save_file(tensors, str(folder / WEIGHTS_FILE))
    info = {"base_model": base_model, "settings": getattr(model.config, CONFIG_KEY)}
    (folder / ADAPTER_FILE).write_text(json.dumps(info, indent=2) + "\n")


def is_adapter_run(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_FILE).is_file()


def adapter_run_base(path: str | Path) -> str:
    return json.loads((Path(path) / ADAPTER_FILE).read_text())["base_model"]


def saved_with_adapters(path: str | Path) -> bool:
    """A model folder whose config.json records bottleneck adapters (saved whole)."""
    config = Path(path) / "config.json"
    return config.is_file() and CONFIG_KEY in json.loads(config.read_text())


def _saved_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Adapter tensors from an adapter-only save or from the model's own safetensors files."""
    from safetensors import safe_open

    files = [folder / WEIGHTS_FILE] if (folder / WEIGHTS_FILE).is_file() else sorted(folder.glob("*.safetensors"))
    found: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            found.update({k: handle.get_tensor(k) for k in handle.keys() if is_adapter_key(k)})
    return found


def restore_adapters(model: nn.Module, folder: str | Path) -> nn.Module:
    """Re-insert the adapters a saved run recorded (ADAPTER_FILE, or model.config) and load their
    weights; a model without adapters is returned as it is."""
    folder = Path(folder)
    settings: dict[str, Any] | None = None
    if is_adapter_run(folder):
        settings = json.loads((folder / ADAPTER_FILE).read_text())["settings"]
    elif getattr(model.config, CONFIG_KEY, None):
        settings = getattr(model.config, CONFIG_KEY)
        delattr(model.config, CONFIG_KEY)
    if not settings:
        return model
    names = add_adapters(model, AdapterSettings(**settings))
    weights = _saved_weights(folder)
    missing = [n for n in names if n not in weights]
    if missing:
        raise AlignInputError(f"{folder}: the saved adapter weights lack {missing[0]} (and {len(missing) - 1} more)")
    model.load_state_dict(weights, strict=False)
    return model
