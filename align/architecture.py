"""Where things are in a decoder model, found by structure rather than by name (every
architecture of the matrix names its block stack differently): the stack of transformer blocks.
Below both partial fine-tuning (align.peft_builders) and bottleneck adapters (align.adapters)."""

from __future__ import annotations

from torch import nn

from align.errors import AlignInputError


def transformer_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The stack of transformer blocks: the longest ModuleList (model.layers, transformer.h, ...)."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (best is None or len(module) > len(best[1])):
            best = (name, module)
    if best is None:
        raise AlignInputError(f"cannot find the transformer blocks of {type(model).__name__} (no list of layers)")
    return best
