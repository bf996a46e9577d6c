"""DPO's implicit reward, so a tuned policy can be judged on held-out pairs like a reward model.

    r(x, y) = beta * (log pi(y | x) - log pi_ref(y | x))

summed over the response's tokens (its end-of-turn token included), rendered with the chat
template exactly as in SFT. `ImplicitReward.score` has RewardScorer's signature, so the reward
stage's `evaluate_split` gives accuracy, Kendall's tau, calibration and gold agreement.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from align.ppo.models import Policy
from align.reward.text import Prompt, messages_for
from align.sft.data import tokenize_conversation
from align.sft.evaluate import sequence_logprobs


class ImplicitReward:
    def __init__(self, policy: Policy, beta: float, batch_size: int = 32):
        self.policy, self.beta, self.batch_size = policy, beta, batch_size

    def encode(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        encoded = [tokenize_conversation(self.policy.tokenizer, messages_for(p, r)) for p, r in zip(prompts, responses)]
        return [ids for ids, _ in encoded], [mask for _, mask in encoded]

    @torch.no_grad()
    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        """(N,) implicit rewards."""
        ids, masks = self.encode(prompts, responses)
        pad = self.policy.tokenizer.pad_token_id or 0
        tuned, _ = sequence_logprobs(self.policy.model, ids, masks, pad, self.batch_size)
        with self.policy.reference() as reference:
            ref, _ = sequence_logprobs(reference, ids, masks, pad, self.batch_size)
        return self.beta * (tuned - ref)
