"""The critic: a transformer backbone with a scalar value head, V(s_t) for every position.

Two ways to start it (config `critic.init`):
- "reward": the reward model's backbone and its score head (InstructGPT / Ouyang et al. 2022
  initialise the value function from the RM), so early values are already on the RM's scale;
  needs the reward model to share the policy's tokenizer, since the critic reads policy tokens.
- "policy": the policy's own (SFT) backbone with a fresh zero-initialised head.
It is always a separate module from the policy, so critic gradients never touch the actor.
"""

from __future__ import annotations

import torch
from torch import nn


class ValueModel(nn.Module):
    def __init__(self, backbone: nn.Module, hidden_size: int, head: nn.Linear | None = None):
        super().__init__()
        self.backbone = backbone
        self.value_head = nn.Linear(hidden_size, 1, bias=True)
        if head is None:
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)
        else:
            with torch.no_grad():  # an ensemble's heads are averaged: the reward is their mean
                self.value_head.weight.copy_(head.weight.mean(0, keepdim=True))
                if head.bias is not None:
                    self.value_head.bias.copy_(head.bias.mean(0, keepdim=True))
                else:
                    self.value_head.bias.zero_()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T) ids -> (B, T) values."""
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        return self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)


def critic_from_causal_lm(model: nn.Module) -> ValueModel:
    """A critic on a (merged) causal LM's backbone, e.g. the SFT policy; the LM head is dropped."""
    backbone = model.base_model if hasattr(model, "base_model") else model
    return ValueModel(backbone, model.config.hidden_size)


def critic_from_sequence_classifier(model: nn.Module) -> ValueModel:
    """A critic from an AutoModelForSequenceClassification reward model: its backbone and score head."""
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    if not isinstance(head, nn.Linear):
        raise TypeError(f"cannot find a linear score head on {type(model).__name__}")
    return ValueModel(model.base_model, model.config.hidden_size, head=head)
