"""PPO building blocks: pure torch math (kl, rewards, advantages, losses, KL controller),
plus the two model-facing pieces (rollout, value model). `stages/ppo.py` wires them together."""
