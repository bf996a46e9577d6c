"""align/rl math against values worked out by hand (the numbers in comments are the working)."""

from __future__ import annotations

import math

import pytest
import torch

from align.rl.advantages import gae, masked_mean, masked_var, masked_whiten
from align.rl.kl import kl_per_token
from align.rl.kl_controller import AdaptiveKLController, FixedKLController
from align.rl.losses import (
    entropy_from_logits,
    explained_variance,
    policy_loss,
    value_loss,
)
from align.rl.rewards import (
    RunningMoments,
    clip_scores,
    last_token_index,
    penalize_missing_eos,
    shaped_rewards,
)


def close(a, b, tol=1e-6):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=tol)


# -- GAE ---------------------------------------------------------------------------------------
def test_gae_four_tokens_by_hand():
    # gamma=0.9, lam=0.8 -> gamma*lam = 0.72
    # t=3: delta = 1 + 0 - 0.2 = 0.8                          A3 = 0.8
    # t=2: delta = 0 + 0.9*0.2 - 0.3 = -0.12                  A2 = -0.12 + 0.72*0.8   = 0.456
    # t=1: delta = 0 + 0.9*0.3 - 0.4 = -0.13                  A1 = -0.13 + 0.72*0.456 = 0.19832
    # t=0: delta = 0 + 0.9*0.4 - 0.5 = -0.14                  A0 = -0.14 + 0.72*0.19832 = 0.0027904
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 0.2]])
    adv, ret = gae(rewards, values, torch.ones(1, 4), gamma=0.9, lam=0.8)
    assert close(adv, [[0.0027904, 0.19832, 0.456, 0.8]])
    assert close(ret, [[0.5027904, 0.59832, 0.756, 1.0]])


def test_gae_ignores_padding_values_and_rewards():
    # 3 real tokens; the padded 4th has garbage reward/value that must not leak in.
    # t=2: delta = 1 - 0.3 = 0.7 -> A2 = 0.7;  t=1: -0.13 + 0.72*0.7 = 0.374;  t=0: -0.14 + 0.72*0.374 = 0.12928
    rewards = torch.tensor([[0.0, 0.0, 1.0, 9.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    assert close(adv, [[0.12928, 0.374, 0.7, 0.0]])
    assert close(ret, [[0.62928, 0.774, 1.0, 0.0]])


def test_gae_gamma_lam_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[0.1, -0.2, 0.3]])
    values = torch.tensor([[0.0, 0.5, 1.0]])
    adv, _ = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert close(adv, [[0.2 - 0.0, 0.1 - 0.5, 0.3 - 1.0]])


# -- KL ------------------------------------------------------------------------------------------
def test_kl_estimators_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -3.0]])
    ref = torch.tensor([[-1.5, -1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    # log_ratio = [0.5, -1.0, (masked)]
    assert close(kl_per_token(logp, ref, mask, "k1"), [[0.5, -1.0, 0.0]])
    assert close(kl_per_token(logp, ref, mask, "k2"), [[0.125, 0.5, 0.0]])
    # k3 = r - 1 - log r with r = exp(-log_ratio): exp(-0.5) - 1 + 0.5, exp(1) - 1 - 1
    assert close(kl_per_token(logp, ref, mask, "k3"), [[math.exp(-0.5) - 0.5, math.e - 2.0, 0.0]])
    with pytest.raises(ValueError):
        kl_per_token(logp, ref, mask, "k4")


def test_kl_is_zero_when_policy_equals_reference():
    logp = torch.randn(2, 5)
    for est in ("k1", "k2", "k3"):
        assert close(kl_per_token(logp, logp.clone(), None, est), torch.zeros(2, 5))


# -- rewards -------------------------------------------------------------------------------------
def test_shaped_reward_places_score_at_last_real_token():
    scores = torch.tensor([2.0, -1.0])
    kl = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    rewards, penalty = shaped_rewards(scores, kl, mask, kl_coef=0.5)
    assert close(penalty, [[-0.05, -0.1, -0.15, 0.0], [-0.25, -0.3, 0.0, 0.0]])
    assert close(rewards, [[-0.05, -0.1, 1.85, 0.0], [-0.25, -1.3, 0.0, 0.0]])
    assert torch.equal(kl, torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]]))  # input untouched


def test_last_token_index_and_empty_rows():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]])
    assert last_token_index(mask).tolist() == [1, 2, 0]
    rewards, _ = shaped_rewards(torch.tensor([1.0, 1.0, 5.0]), torch.zeros(3, 3), mask, 0.1)
    assert rewards[2].abs().sum() == 0  # an all-padding row gets no score


def test_missing_eos_penalty_and_clip():
    scores = torch.tensor([1.0, 1.0])
    assert close(penalize_missing_eos(scores, torch.tensor([True, False]), 2.0), [1.0, -1.0])
    assert close(clip_scores(torch.tensor([-9.0, 0.5, 9.0]), 5.0), [-5.0, 0.5, 5.0])
    assert close(clip_scores(torch.tensor([-9.0]), None), [-9.0])


def test_running_moments_match_population_statistics():
    rm = RunningMoments()
    rm.update(torch.tensor([1.0, 2.0, 3.0]))
    assert math.isclose(rm.mean, 2.0) and math.isclose(rm.var, 2 / 3)
    rm.update(torch.tensor([5.0]))
    # [1,2,3,5]: mean 2.75; var = (1.75^2 + 0.75^2 + 0.25^2 + 2.25^2) / 4 = 8.75 / 4
    assert math.isclose(rm.mean, 2.75) and math.isclose(rm.var, 2.1875)
    clone = RunningMoments()
    clone.load_state_dict(rm.state_dict())
    assert clone.state_dict() == rm.state_dict()


# -- masked statistics ---------------------------------------------------------------------------
def test_masked_whiten_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    # mean 2, unbiased var = (1 + 0 + 1) / 2 = 1
    assert close(masked_mean(x, mask), 2.0) and close(masked_var(x, mask), 1.0)
    assert close(masked_whiten(x, mask), [[-1.0, 0.0, 1.0, 0.0]], tol=1e-4)
    assert close(masked_whiten(x, mask, shift_mean=False), [[1.0, 2.0, 3.0, 0.0]], tol=1e-4)
    assert x[0, 3] == 100.0


# -- PPO losses ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "adv, ratio, expected, clipped",
    [
        (1.0, 1.5, -1.2, 1.0),  # A>0, ratio above 1+eps: clipped to -A*1.2, no gradient
        (1.0, 1.1, -1.1, 0.0),  # A>0 inside the trust region: plain surrogate
        (1.0, 0.5, -0.5, 0.0),  # A>0, ratio below 1-eps: the unclipped (pessimistic) term wins
        (-1.0, 0.5, 0.8, 1.0),  # A<0, ratio below 1-eps: clipped to -A*0.8
        (-1.0, 1.5, 1.5, 0.0),  # A<0, ratio above 1+eps: unclipped (pessimistic) term wins
    ],
)
def test_policy_loss_clipping_regimes(adv, ratio, expected, clipped):
    old = torch.tensor([[-1.0]])
    logp = (old + math.log(ratio)).requires_grad_(True)
    out = policy_loss(logp, old, torch.tensor([[adv]]), torch.ones(1, 1), clip_eps=0.2)
    assert close(out.loss.detach(), expected, tol=1e-5)
    assert close(out.clipfrac, clipped)
    out.loss.backward()
    if clipped:
        assert logp.grad.abs().item() == 0.0
    else:  # d(-A * exp(logp - old)) / dlogp = -A * ratio
        assert close(logp.grad, [[-adv * ratio]], tol=1e-5)


def test_policy_loss_masks_padding_and_reports_approx_kl():
    old = torch.tensor([[-1.0, -1.0]])
    logp = torch.tensor([[-1.0 + math.log(1.1), 50.0]])
    out = policy_loss(logp, old, torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]]), 0.2)
    assert close(out.loss, -1.1, tol=1e-5)
    assert close(out.approx_kl, 0.1 - math.log(1.1), tol=1e-6)  # (r - 1) - log r


def test_value_loss_clipped_by_hand():
    values = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.5, 0.5]])
    returns = torch.tensor([[2.0, 0.0]])
    # token 1: (1-2)^2 = 1 vs v_clip = 0.7 -> (0.7-2)^2 = 1.69 -> 1.69
    # token 2: (0-0)^2 = 0 vs v_clip = 0.3 -> 0.09 -> 0.09;  loss = 0.5 * (1.69 + 0.09) / 2
    loss, clipfrac = value_loss(values, old, returns, torch.ones(1, 2), clip_eps=0.2)
    assert close(loss, 0.445) and close(clipfrac, 1.0)
    loss, clipfrac = value_loss(
        torch.tensor([[0.6]]), torch.tensor([[0.5]]), torch.tensor([[0.0]]), torch.ones(1, 1), 0.2
    )
    assert close(loss, 0.18) and close(clipfrac, 0.0)
    loss, _ = value_loss(values, old, returns, torch.ones(1, 2), clip_eps=None)
    assert close(loss, 0.25)


def test_entropy_and_explained_variance():
    uniform = torch.zeros(1, 1, 4)
    assert close(entropy_from_logits(uniform), [[math.log(4)]])
    returns = torch.tensor([[1.0, 2.0, 3.0]])
    mask = torch.ones(1, 3)
    assert close(explained_variance(returns, returns, mask), 1.0)
    assert close(explained_variance(torch.full((1, 3), 2.0), returns, mask), 0.0)


# -- KL controllers ------------------------------------------------------------------------------
def test_adaptive_kl_controller_by_hand():
    # K_beta = 256 / 10000 = 0.0256; error clipped to +-0.2
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert math.isclose(ctl.update(9.0, 256), 0.1 * (1 + 0.2 * 0.0256))  # 9/6-1 = 0.5 -> 0.2
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert math.isclose(ctl.update(3.0, 256), 0.1 * (1 - 0.2 * 0.0256))  # -0.5 -> -0.2
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert math.isclose(ctl.update(6.6, 256), 0.1 * (1 + 0.1 * 0.0256))  # within the clip
    restored = AdaptiveKLController(0.5, target=6.0, horizon=10000)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value
    fixed = FixedKLController(0.05)
    assert fixed.update(100.0, 256) == 0.05


# -- critic-free group advantages (GRPO / RLOO) ----------------------------------------------------
def test_grpo_group_of_four_with_a_tie():
    from align.rl.group import group_advantages

    rewards = torch.tensor([1.0, 2.0, 2.0, 3.0, 0.0, 0.0, 0.0, 4.0])  # two prompts, 4 responses each
    a = group_advantages(rewards, 4, "grpo", eps=0.0)
    # group 1: mean 2, unbiased std sqrt((1 + 0 + 0 + 1) / 3) = sqrt(2/3)
    s1 = (2 / 3) ** 0.5
    # group 2: mean 1, unbiased std sqrt((1 + 1 + 1 + 9) / 3) = 2
    assert a.tolist() == pytest.approx([-1 / s1, 0.0, 0.0, 1 / s1, -0.5, -0.5, -0.5, 1.5])
    assert group_advantages(rewards, 4, "grpo", scale_by_std=False).tolist() == pytest.approx(
        [-1, 0, 0, 1, -1, -1, -1, 3]
    )


def test_rloo_leave_one_out_baseline_by_hand():
    from align.rl.group import group_advantages

    a = group_advantages(torch.tensor([1.0, 2.0, 2.0, 3.0]), 4, "rloo")
    # response 1: 1 - mean(2, 2, 3) = -4/3; response 2: 2 - mean(1, 2, 3) = 0; response 4: 3 - mean(1, 2, 2) = 4/3
    assert a.tolist() == pytest.approx([-4 / 3, 0.0, 0.0, 4 / 3])


def test_equal_rewards_give_zero_advantage_and_no_nan():
    from align.rl.group import group_advantages, token_advantages

    for estimator in ("grpo", "rloo"):
        a = group_advantages(torch.full((6,), 5.0), 3, estimator)
        assert torch.equal(a, torch.zeros(6)), estimator
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert token_advantages(torch.tensor([2.0, -1.0]), mask).tolist() == [[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="at least 2 responses"):
        group_advantages(torch.ones(4), 1, "grpo")
