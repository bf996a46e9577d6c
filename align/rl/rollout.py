"""Scoring a rollout: the log-probs of every sampled token under the policy (or reference) and
the critic's values, in one forward pass each. Sampling itself is `align.generation`.

Positions are computed from the attention mask, so a left-padded prompt sees the same
position ids in the scoring forward as during generation.
"""

from __future__ import annotations

import torch

from align.generation import Rollout


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def token_logprobs(
    model, rollout: Rollout, temperature: float = 1.0, with_entropy: bool = False, entropy_grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(a_t|s_t) (B, R) of the response tokens in one forward; entropy (B, R) if asked, in
    the autograd graph only with `entropy_grad` (an entropy bonus): logged alone, its backward
    through a (B, R, vocab) softmax would cost as much as the rest of the update.

    Only the R logits that predict response tokens are computed (`logits_to_keep`): the prompt's
    rows of a 49k-vocabulary head are most of a CPU update's memory traffic otherwise."""
    from align.rl.losses import entropy_from_logits

    attention_mask = rollout.attention_mask.long()
    R = rollout.response_ids.shape[1]
    logits = model(
        input_ids=rollout.input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        use_cache=False,
        logits_to_keep=R + 1,
    ).logits
    logits = logits[:, -R - 1 : -1].float() / temperature  # the logits that predicted each response token
    chosen = logits.gather(-1, rollout.response_ids.unsqueeze(-1)).squeeze(-1)
    logprobs = chosen - torch.logsumexp(logits, dim=-1)
    entropy = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            entropy = entropy_from_logits(logits)
    return logprobs, entropy


def token_values(critic, rollout: Rollout) -> torch.Tensor:
    """V(s_t) (B, R) for the state before each response token (the critic reads the same tokens)."""
    attention_mask = rollout.attention_mask.long()
    values = critic(rollout.input_ids, attention_mask, position_ids(attention_mask))  # (B, P + R)
    P, R = rollout.query_ids.shape[1], rollout.response_ids.shape[1]
    return values[:, P - 1 : P + R - 1].float()
