"""Step 6 of the PPO loop: several epochs over shuffled minibatches of one rollout batch,
updating the policy (clipped surrogate) and the critic (clipped value loss) with their own
optimizers. A non-finite loss or gradient stops before any weight changes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields

import torch

from align.config.ppo import PPOSettings
from align.errors import AlignInputError
from align.rl.advantages import masked_mean
from align.rl.losses import policy_loss, value_loss
from align.rl.rollout import Rollout, token_logprobs, token_values


class TrainingDiverged(AlignInputError):
    """A NaN/inf loss or gradient: the step is refused so the weights stay as they were."""


@dataclass
class Experience:
    """One rollout batch with everything PPO needs, all (B, R) except `rollout`."""

    rollout: Rollout
    old_logprobs: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor

    def select(self, index: torch.Tensor) -> Experience:
        return Experience(self.rollout.select(index), *(getattr(self, f.name)[index] for f in fields(self)[1:]))


class Optimised:
    """A module with its optimizer and scheduler, or a DeepSpeed engine playing all three."""

    def __init__(self, module, optimizer, scheduler, max_grad_norm: float, name: str, engine=None):
        self.module, self.optimizer, self.scheduler = module, optimizer, scheduler
        self.max_grad_norm, self.name, self.engine = max_grad_norm, name, engine

    @property
    def forward_module(self):
        return self.engine if self.engine is not None else self.module

    def step(self, loss: torch.Tensor) -> float:
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"{self.name} loss is {loss.item()} (NaN/inf); the update was refused and the weights are unchanged. "
                "Check optim.*_lr (try 10x lower), reward.clip / reward.normalize, and the reward model's scores"
            )
        if self.engine is not None:
            self.engine.backward(loss)
            self.engine.step()
            norm = self.engine.get_global_grad_norm()
            return float(norm) if norm is not None else float("nan")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.module.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        if not torch.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(
                f"{self.name} gradient norm is {norm.item()}; the update was refused and the weights are unchanged. "
                "Lower optim.*_lr or set reward.clip"
            )
        self.optimizer.step()
        return float(norm)

    def end_of_step(self) -> None:
        """Advance the LR schedule once per PPO step (not per minibatch; DeepSpeed is not given it)."""
        if self.scheduler is not None:
            self.scheduler.step()


def ppo_update(
    policy: Optimised, critic: Optimised, exp: Experience, settings: PPOSettings, temperature: float, generator: torch.Generator
) -> dict[str, float]:
    """Run `settings.epochs` passes over `exp` in minibatches; returns the mean of each statistic."""
    stats: dict[str, list[float]] = defaultdict(list)
    batch = exp.old_logprobs.shape[0]
    for _ in range(settings.epochs):
        order = torch.randperm(batch, generator=generator)
        for start in range(0, batch, settings.minibatch_size):
            mb = exp.select(order[start : start + settings.minibatch_size])
            mask = mb.rollout.response_mask
            logprobs, entropy = token_logprobs(policy.forward_module, mb.rollout, temperature, with_entropy=True)
            pg = policy_loss(logprobs, mb.old_logprobs, mb.advantages, mask, settings.clip_eps)
            mean_entropy = masked_mean(entropy, mask)
            loss = pg.loss - settings.entropy_coef * mean_entropy
            policy_norm = policy.step(loss)

            values = token_values(critic.forward_module, mb.rollout)
            v_loss, v_clipfrac = value_loss(values, mb.old_values, mb.returns, mask, settings.value_clip_eps)
            critic_norm = critic.step(v_loss)

            for key, value in (
                ("policy_loss", pg.loss), ("value_loss", v_loss), ("entropy", mean_entropy), ("clipfrac", pg.clipfrac),
                ("approx_kl", pg.approx_kl), ("ratio", pg.ratio_mean), ("value_clipfrac", v_clipfrac),
                ("policy_grad_norm", policy_norm), ("critic_grad_norm", critic_norm),
            ):
                stats[key].append(float(value.detach()) if torch.is_tensor(value) else float(value))
    policy.end_of_step()
    critic.end_of_step()
    return {key: sum(v) / len(v) for key, v in stats.items()}
