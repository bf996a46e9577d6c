"""The (architecture, update mode) guard: one forward and backward on two tokens before training,
so a pair that cannot train is exit 2 naming both and what to use; a pair that can passes
untouched (no gradient left behind, the same random numbers drawn after it)."""

from __future__ import annotations

import pytest
import torch
import transformers

from align.config.common import UpdateConfig
from align.errors import AlignInputError
from align.peft_builders import apply_update_mode


def falcon():
    config = transformers.FalconConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2)
    torch.manual_seed(0)
    return transformers.FalconForCausalLM(config)


def test_falcon_prefix_tuning_passes_and_leaves_no_trace():
    """Falcon with PEFT prefix tuning trains in this stack (transformers 5, PEFT 0.21): the guard lets it."""
    from align.peft_builders import _apply_update_mode

    plain, model = falcon(), falcon()
    torch.manual_seed(7)
    _apply_update_mode(plain, UpdateConfig(mode="prefix_tuning"))  # the same, without the check
    expected = torch.rand(3)
    torch.manual_seed(7)
    wrapped = apply_update_mode(model, UpdateConfig(mode="prefix_tuning"))
    assert torch.equal(torch.rand(3), expected)  # the check drew nothing from the run's random stream
    assert all(p.grad is None for p in wrapped.parameters())
    assert wrapped.training == model.training


def test_a_pair_whose_step_fails_is_exit_2_naming_architecture_mode_and_fix(monkeypatch):
    model = falcon()

    def broken(self, *args, **kwargs):  # what a prefix that does not fit the attention looks like
        raise RuntimeError("The size of tensor a (4) must match the size of tensor b (6) at non-singleton dimension 3")

    monkeypatch.setattr(transformers.FalconForCausalLM, "forward", broken)
    with pytest.raises(AlignInputError) as error:
        apply_update_mode(model, UpdateConfig(mode="prefix_tuning"))
    message = str(error.value)
    assert "update.mode = prefix_tuning does not train FalconForCausalLM (falcon)" in message
    assert "must match the size of tensor b" in message and "use update.mode: lora" in message
