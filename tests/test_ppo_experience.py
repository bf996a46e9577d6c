"""The PPO step record: make_experience on a tiny policy (shapes, masks, where the score and the
KL penalty land, the GAE identity) and step_metrics against hand-computed values."""

from __future__ import annotations

import ppo_world
import pytest
import torch

from align.config.loader import validate
from align.config.ppo import PPOConfig, PPOSettings
from align.generation import Rollout, settings_for
from align.ppo.engines import make_optimised
from align.ppo.experience import (
    Experience,
    complete_on_policy,
    make_experience,
    old_logprobs_needed,
    sample_rows,
    step_metrics,
)
from align.ppo.models import build_critic, build_policy
from align.ppo.prompts import load_prompts
from align.ppo.scoring import RewardSources, load_scorer
from align.ppo.update import ppo_update
from align.rl.kl import kl_per_token
from align.rl.rewards import RunningMoments
from align.rl.rollout import token_logprobs


class LengthGold:
    def score(self, prompt, response):
        return float(len(response))


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    world = ppo_world.build(tmp_path_factory.mktemp("exp_world"))
    config = validate(
        PPOConfig,
        ppo_world.config_dict(
            world,
            tmp_path_factory.mktemp("out"),
            ppo={"whiten_advantages": False},
            reward={"normalize": False, "clip": None, "missing_eos_penalty": None},
        ),
    )
    scorer = load_scorer(config.reward_model)
    policy = build_policy(config)
    critic = build_critic(config, policy, scorer)
    prompts = load_prompts(config.data.train, policy.tokenizer, config.rollout.max_prompt_length, config.data.columns)
    return (
        config,
        policy,
        make_optimised(policy.model, 1e-3, config, "policy"),
        make_optimised(critic, 1e-3, config, "critic"),
        scorer,
        prompts,
    )


def test_make_experience_on_a_tiny_policy(parts):
    config, policy, actor, critic, scorer, prompts = parts
    torch.manual_seed(0)
    gen = settings_for(policy.tokenizer, policy.model, config.rollout.max_new_tokens)
    times: dict[str, float] = {}
    exp = make_experience(
        config,
        policy,
        actor,
        critic,
        RewardSources.of_scorer(scorer),
        LengthGold(),
        prompts[:5],
        gen,
        RunningMoments(),
        0.3,
        times,
    )
    B, R = exp.rollout.response_ids.shape
    assert (
        B == 5
        and len(exp.prompts) == len(exp.responses) == 5
        and set(times) == {"time_generate", "time_score", "time_train"}
    )
    mask = exp.mask
    for name in ("logprobs", "ref_logprobs", "values", "kl", "kl_penalty", "rewards", "advantages", "returns"):
        tensor = getattr(exp, name)
        assert tensor.shape == (B, R), name
    for name in ("kl", "kl_penalty", "rewards", "advantages", "returns"):
        assert torch.all(getattr(exp, name)[mask == 0] == 0), name
    assert exp.raw_scores.shape == exp.scores.shape == (B,) and torch.equal(
        exp.raw_scores, exp.scores
    )  # no transform configured
    # a fresh LoRA adapter (B = 0) is the reference itself: no KL, and the reward is the score on the last token
    assert torch.equal(exp.logprobs, exp.ref_logprobs) and torch.all(exp.kl == 0)
    last = mask.sum(1).long() - 1
    assert torch.allclose(exp.rewards[torch.arange(B), last], exp.scores)
    assert torch.allclose(exp.rewards.sum(1), exp.scores + exp.kl_penalty.sum(1))
    # unwhitened GAE: returns are advantages + values on every response token
    assert torch.allclose((exp.returns - exp.advantages - exp.values) * mask, torch.zeros_like(mask), atol=1e-6)
    assert exp.gold_scores.tolist() == [float(len(r)) for r in exp.responses]
    minibatch = exp.select(torch.tensor([3, 1]))
    assert minibatch.responses == [exp.responses[3], exp.responses[1]] and torch.equal(
        minibatch.values, exp.values[[3, 1]]
    )
    assert [row["response"] for row in sample_rows(exp)] == exp.responses


def hand_made() -> Experience:
    """Two responses of lengths 2 and 3 (R = 3), numbers chosen to sum by hand."""
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    rollout = Rollout(
        torch.zeros(2, 1, dtype=torch.long),
        torch.ones(2, 1, dtype=torch.long),
        torch.tensor([[5, 2, 0], [6, 7, 8]]),
        mask,
        torch.tensor([True, False]),
    )
    logprobs = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -1.0]])
    ref = torch.tensor([[-1.5, -2.0, 0.0], [-1.0, -0.25, -1.0]])  # k1 per token: [0.5, 0, 0], [0.5, -0.25, 0]
    kl = (logprobs - ref) * mask
    kl_penalty = -0.1 * kl
    values = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 2.0]])
    returns = torch.tensor([[2.0, 2.0, 0.0], [1.0, 1.0, 1.0]])
    return Experience(
        ["p1", "p2"],
        ["ab", ""],
        rollout,
        logprobs,
        ref,
        values,
        torch.tensor([1.0, 3.0]),
        torch.tensor([0.5, 1.5]),
        torch.tensor([2.0, 0.0]),
        kl,
        kl_penalty,
        kl_penalty,
        returns - values,
        returns,
    )


def test_step_metrics_by_hand():
    m = step_metrics(hand_made(), kl_coef=0.1, estimator="k1")
    assert m["rm_score"] == pytest.approx(2.0) and m["rm_score_std"] == pytest.approx(2**0.5)
    assert m["score"] == pytest.approx(1.0)
    assert m["kl"] == pytest.approx((0.5 + 0.25) / 2)  # per-response sums 0.5 and 0.25
    assert m["kl_k1"] == pytest.approx(m["kl"])
    assert m["kl_per_token"] == pytest.approx(0.75 / 5)
    assert m["non_score_reward"] == pytest.approx(-0.1 * 0.375)
    assert m["response_length"] == pytest.approx(2.5) and m["no_eos_share"] == pytest.approx(0.5)
    assert m["empty_share"] == pytest.approx(0.5) and m["gold_score"] == pytest.approx(1.0)
    assert m["returns_mean"] == pytest.approx((2 + 2 + 1 + 1 + 1) / 5)
    assert m["values_mean"] == pytest.approx((1 + 2 + 0 + 1 + 2) / 5)
    # values (1, 2 | 0, 1, 2) against returns (2, 2 | 1, 1, 1): 1 - var(residual) / var(returns)
    residual = torch.tensor([1.0, 0.0, 1.0, 0.0, -1.0])
    target = torch.tensor([2.0, 2.0, 1.0, 1.0, 1.0])
    assert m["explained_variance"] == pytest.approx(float(1 - residual.var() / target.var()), abs=1e-6)


def test_old_logprobs_needed_only_when_the_policy_moves_first_or_they_shape_the_reward(parts):
    config = parts[0].model_copy(deep=True)
    config.kl.apply_to, config.ppo.epochs, config.ppo.minibatch_size = "loss", 1, 8
    assert not old_logprobs_needed(config, 8) and old_logprobs_needed(config, 9)  # 9 rows: two minibatches
    config.ppo.epochs = 2
    assert old_logprobs_needed(config, 8)
    config.ppo.epochs, config.kl.apply_to = 1, "reward"
    assert old_logprobs_needed(config, 8)


def test_an_on_policy_update_takes_old_logprobs_from_its_own_forward(tmp_path):
    """The skipped pre-update forward is replaced exactly: the update fills the log-probs the
    experience would have had, the ratio is 1, and the KL figures follow."""
    world = ppo_world.build(tmp_path / "w")
    sections = {
        "kl": {"apply_to": "loss"},
        "advantage": {"estimator": "grpo"},
        "rollout": {"batch_size": 2, "samples_per_prompt": 2},
        "ppo": {"epochs": 1, "minibatch_size": 4},
    }
    config = validate(PPOConfig, ppo_world.config_dict(world, tmp_path / "out", **sections))
    policy = build_policy(config)
    actor = make_optimised(policy.model, 1e-3, config, "policy")
    prompts = load_prompts(config.data.train, policy.tokenizer, config.rollout.max_prompt_length, config.data.columns)
    gen = settings_for(policy.tokenizer, policy.model, config.rollout.max_new_tokens, samples_per_prompt=2)
    with torch.no_grad():  # a policy that differs from its reference, so the KL is not 0
        for p in policy.model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    torch.manual_seed(0)
    sources = RewardSources.of_scorer(load_scorer(config.reward_model))
    exp = make_experience(config, policy, actor, None, sources, None, prompts[:2], gen, RunningMoments(), 0.1)
    assert exp.logprobs is None and exp.kl is None
    with torch.no_grad():
        expected, _ = token_logprobs(actor.forward_module, exp.rollout, gen.temperature)
    settings = PPOSettings(epochs=1, minibatch_size=4)
    stats = ppo_update(actor, None, exp, settings, gen.temperature, torch.Generator().manual_seed(0), 0.1)
    complete_on_policy(exp, "k3")
    assert torch.allclose(exp.logprobs, expected, atol=1e-5) and stats["ratio"] == pytest.approx(1.0)
    assert stats["clipfrac"] == 0.0
    assert torch.allclose(exp.kl, kl_per_token(expected, exp.ref_logprobs, exp.mask, "k3"), atol=1e-5)
    assert float(exp.kl.sum()) > 0 and step_metrics(exp, 0.1, "k3")["kl_per_token"] > 0
