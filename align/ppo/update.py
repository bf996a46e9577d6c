"""Step 6 of the PPO loop: several epochs over shuffled minibatches of one rollout batch,
updating the policy (clipped surrogate, optionally + a k3 KL term) and, when there is one, the
critic (clipped value loss), each with its own optimizer. A non-finite loss or gradient stops
before any weight changes.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from align.config.ppo import PPOSettings
from align.ppo.engines import Optimised
from align.ppo.experience import Experience
from align.rl.advantages import masked_mean
from align.rl.kl import kl_per_token
from align.rl.losses import policy_loss, value_loss
from align.rl.rollout import token_logprobs, token_values


def ppo_update(
    actor: Optimised,
    critic: Optimised | None,
    exp: Experience,
    settings: PPOSettings,
    temperature: float,
    generator: torch.Generator,
    kl_loss_coef: float = 0.0,
) -> dict[str, float]:
    """Run `settings.epochs` passes over `exp` in minibatches; returns the mean of each statistic.
    Without a critic (grpo, rloo) only the policy steps; `kl_loss_coef` > 0 adds
    kl_loss_coef * mean k3 KL to the reference to the policy loss (kl.apply_to = loss).
    Experience without old log-probs (one pass, one minibatch: see
    experience.old_logprobs_needed) takes them from this forward, detached, and keeps them."""
    stats: dict[str, list[float]] = defaultdict(list)
    batch = exp.ref_logprobs.shape[0]
    on_policy = exp.logprobs is None
    if on_policy:
        exp.logprobs = torch.zeros_like(exp.ref_logprobs)
    for _ in range(settings.epochs):
        order = torch.randperm(batch, generator=generator)
        for start in range(0, batch, settings.minibatch_size):
            rows = order[start : start + settings.minibatch_size]
            mb = exp.select(rows)
            mask = mb.rollout.response_mask
            logprobs, entropy = token_logprobs(
                actor.forward_module, mb.rollout, temperature, with_entropy=True, entropy_grad=settings.entropy_coef > 0
            )
            if on_policy:
                mb.logprobs = logprobs.detach()
                exp.logprobs[rows] = mb.logprobs
            pg = policy_loss(logprobs, mb.logprobs, mb.advantages, mask, settings.clip_eps)
            mean_entropy = masked_mean(entropy, mask)
            loss = pg.loss - settings.entropy_coef * mean_entropy
            step = {
                "policy_loss": pg.loss,
                "entropy": mean_entropy,
                "clipfrac": pg.clipfrac,
                "approx_kl": pg.approx_kl,
                "ratio": pg.ratio_mean,
            }
            if kl_loss_coef > 0:
                step["kl_loss"] = masked_mean(kl_per_token(logprobs, mb.ref_logprobs, mask, "k3"), mask)
                loss = loss + kl_loss_coef * step["kl_loss"]
            step["policy_grad_norm"] = actor.step(loss)
            if critic is not None:
                values = token_values(critic.forward_module, mb.rollout)
                v_loss, v_clipfrac = value_loss(values, mb.values, mb.returns, mask, settings.value_clip_eps)
                step.update(value_loss=v_loss, value_clipfrac=v_clipfrac, critic_grad_norm=critic.step(v_loss))
            for key, value in step.items():
                stats[key].append(float(value.detach()) if torch.is_tensor(value) else float(value))
    actor.end_of_step()
    if critic is not None:
        critic.end_of_step()
    return {key: sum(v) / len(v) for key, v in stats.items()}
