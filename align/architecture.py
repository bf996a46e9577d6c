"""Where things are in a decoder model, found by structure rather than by name (every
architecture of the matrix names its block stack differently): the transformers model under a
PEFT wrapper, the stack of transformer blocks. Below partial fine-tuning (align.peft_builders),
bottleneck adapters (align.adapters) and decoding (align.generation, align.decoding)."""

from __future__ import annotations

from torch import nn

from align.errors import AlignInputError


def unwrapped(model: nn.Module) -> nn.Module:
    """The transformers model itself: under a PEFT wrapper its base model, else the model."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def transformer_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The stack of transformer blocks: the longest ModuleList (model.layers, transformer.h, ...)."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (best is None or len(module) > len(best[1])):
            best = (name, module)
    if best is None:
        raise AlignInputError(f"cannot find the transformer blocks of {type(model).__name__} (no list of layers)")
    return best
