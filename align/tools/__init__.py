"""Tools a policy can call during a rollout: parsing a model's tool calls, the built-in tools."""
