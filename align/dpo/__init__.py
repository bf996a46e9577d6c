"""Offline preference learning (`align dpo`): DPO-family losses and KTO on the reward stage's data."""
