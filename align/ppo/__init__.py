"""The pieces of `align ppo` that touch models, files and reports (the math is in align/rl/)."""
