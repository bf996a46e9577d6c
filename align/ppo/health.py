"""Warnings a user can act on while PPO runs, instead of a silently broken run."""

from __future__ import annotations

from align.config.ppo import PPOConfig
from align.distributed import say


def setup_advice(config: PPOConfig) -> list[str]:
    """Before the first step: settings that are valid but known to waste a run."""
    advice = []
    checks_only = all(source.model is None for source in config.reward_sources)
    if checks_only and not config.uses_critic and config.kl.apply_to == "reward":
        advice.append(
            f"advantage.estimator={config.advantage.estimator} with only rule/function rewards and kl.apply_to=reward: "
            "in a group whose answers are all wrong the rewards differ only by each sample's KL, and the group "
            "standardisation turns that into full-size advantages (noise the policy follows). Set kl.apply_to=loss "
            "(and kl.estimator=k3), GRPO's form, so such groups add nothing"
        )
    return advice


class HealthCheck:
    """Reads each step's metrics; warns on negative mean KL, KL above kl.warn_above, empty responses.

    k1 KL is noisy per batch, so "negative" is judged on the mean of the last `window` steps.
    """

    def __init__(self, config: PPOConfig, window: int = 5):
        self.config, self.window, self.recent_kl = config, window, []
        self.entropies: list[float] = []  # per step; the first `window` are the baseline
        self.entropy_warned = False

    def __call__(self, metrics: dict, step: int) -> None:
        self._truncation(metrics, step)
        self._entropy(metrics, step)
        self.recent_kl = (self.recent_kl + [metrics["kl"]])[-self.window :]
        mean_kl = sum(self.recent_kl) / len(self.recent_kl)
        if len(self.recent_kl) == self.window and mean_kl < -0.1:
            say(
                f"step {step}: mean KL to the reference over the last {self.window} steps is negative ({mean_kl:.3f}). "
                "True sampling cannot produce that on average: check that generation and scoring use the same "
                "temperature/top_p, that dropout is off, and that nothing changed the policy between sampling and scoring",
                warning=True,
            )
        if metrics["kl"] > self.config.kl.warn_above:
            say(
                f"step {step}: KL to the reference is {metrics['kl']:.2f} nats per response (> kl.warn_above="
                f"{self.config.kl.warn_above}): the policy is drifting far (reward hacking?). Lower optim.policy_lr, "
                "raise kl.kl_coef, or use kl.controller=adaptive",
                warning=True,
            )
        if metrics["empty_share"] > 0.5:
            say(
                f"step {step}: {metrics['empty_share']:.0%} of the responses are empty (EOS first); "
                "the reward model scores empty text",
                warning=True,
            )

    def _truncation(self, metrics: dict, step: int) -> None:
        share = metrics.get("no_eos_share", 0.0)
        if share <= 0.5:
            return
        reward = self.config.reward
        if reward.truncated == "zero":
            scored = "scored 0"
        elif reward.missing_eos_penalty:
            scored = f"scored {reward.missing_eos_penalty} lower (reward.missing_eos_penalty)"
        else:
            scored = "scored as they are, unfinished (reward.missing_eos_penalty is off)"
        say(
            f"step {step}: {share:.0%} of the responses hit rollout.max_new_tokens={self.config.rollout.max_new_tokens} "
            f"without ending; they are {scored}. If the task needs longer answers raise rollout.max_new_tokens, "
            "else the policy learns from cut-off text",
            warning=True,
        )

    def _entropy(self, metrics: dict, step: int) -> None:
        """Once: the policy's per-token entropy under half its first steps' mean, the sign that it
        is collapsing onto one answer (GRPO's groups then lose their spread and stop teaching)."""
        if "entropy" not in metrics or self.entropy_warned:
            return
        self.entropies.append(float(metrics["entropy"]))
        if len(self.entropies) <= self.window:
            return
        baseline = sum(self.entropies[: self.window]) / self.window
        recent = sum(self.entropies[-self.window :]) / self.window
        if baseline > 0 and recent < 0.5 * baseline:
            self.entropy_warned = True
            say(
                f"step {step}: the policy's entropy fell from {baseline:.2f} to {recent:.2f} nats per token (mean of "
                f"{self.window} steps): it is collapsing onto a few answers, and groups of samples that all agree "
                "teach nothing. Raise ppo.entropy_coef (e.g. 0.01) or the KL coefficient, or lower optim.policy_lr",
                warning=True,
            )
