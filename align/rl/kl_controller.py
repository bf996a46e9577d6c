"""KL coefficient controllers.

Adaptive (Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences", sec. 2.2):
after each batch of n_steps episodes with measured KL,

    e_t   = clip(KL_t / KL_target - 1, -0.2, 0.2)
    beta <- beta * (1 + K_beta * e_t),   K_beta = n_steps / horizon

so the coefficient rises while KL is above target and falls while it is below.
Both controllers expose state_dict/load_state_dict so a resumed run continues with the
same coefficient.
"""

from __future__ import annotations


class FixedKLController:
    """A constant coefficient."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """Proportional controller that steers the measured KL towards `target`."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError("adaptive KL control needs target > 0 and horizon > 0")
        self.value, self.target, self.horizon = float(init_kl_coef), float(target), int(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Update with the KL measured on the last batch of `n_steps` episodes; returns the new value."""
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


def kl_controller_from(settings) -> FixedKLController | AdaptiveKLController:
    """The controller a `kl:` config section asks for (adaptive needs a positive start value)."""
    if settings.controller == "adaptive" and settings.kl_coef > 0:
        return AdaptiveKLController(settings.kl_coef, settings.target, settings.horizon)
    return FixedKLController(settings.kl_coef)
