"""Public benchmarks for `align eval`: the tasks (tasks.py), log-likelihood and perplexity scoring
(loglik.py), answer checking (answers.py, ifeval.py), figures (stats.py) and running them on a
loaded model (run.py)."""
