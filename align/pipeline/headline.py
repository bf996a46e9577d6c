"""The report's headline in sentences: what each stage changed (before -> after, on how many
held-out examples), which alignment method did best, and what went wrong. Read from the files
the stages wrote, so it can be rebuilt from any finished pipeline dir.

Flags (each a sentence that says what to try):
- a reward model whose validation accuracy fell during training (its last weights are kept);
- an online method whose KL to SFT ended far above its target (> 2x kl.target);
- more responses cut off without EOS at the end of an online run than at its start;
- reward-model score up while the gold score went down by 0.05 or more (reward hacking);
- a method's right answers down by 5 points or more from SFT's (correctness traded for what is rewarded);
each for every round's run too (reward-r2, ppo-r2, ...), whose starting point is the last round's policy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from align.pipeline.methods import METHODS, Leader, comparison_of, gain_kind, leader, leader_sentence, method_rows
from align.pipeline.rounds import round_keys, round_rows, rounds_sentence
from align.rundir import read_metrics

ONLINE = ("ppo", "grpo", "rloo")


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def percent(x: float) -> str:
    return f"{100 * x:.0f}%"


def sft_sentence(root: Path, folder: str = "sft") -> str | None:
    figures = _json(root / folder / "eval.json")
    if figures is None or "tuned" not in figures.get("models", {}):
        return None
    base, tuned = figures["models"].get("base", {}), figures["models"]["tuned"]
    if "exact_match" not in tuned:
        return None
    n = sum(t["n"] for t in tuned.get("per_task", {}).values()) or None
    text = "SFT: exact match " + (f"{percent(base['exact_match'])} -> " if "exact_match" in base else "")
    text += percent(tuned["exact_match"]) + (f" on {n} held-out prompts" if n else "")
    if "token_f1" in tuned and "token_f1" in base:
        text += f" (token F1 {base['token_f1']:.2f} -> {tuned['token_f1']:.2f})"
    if "forgetting_ratio" in tuned:
        text += f"; forgetting ratio {tuned['forgetting_ratio']:.2f} (1.0 = nothing forgotten)"
    return text + "."


def reward_sentence(root: Path, folder: str = "reward") -> str | None:
    figures = _json(root / folder / "eval.json")
    if figures is None:
        return None
    models = figures.get("models", {})
    trained = models.get("trained", {}).get("test") or models.get("trained", {}).get("validation")
    if not trained:
        return None
    untrained = models.get("untrained", {}).get("test") or models.get("untrained", {}).get("validation") or {}
    chance = (
        " (untrained: a random head, chance is 50%)" if untrained and untrained["accuracy"] < 0.5 else " (untrained)"
    )
    text = "Reward model: held-out pair accuracy " + (
        f"{percent(untrained['accuracy'])}{chance} -> " if untrained else ""
    )
    text += f"{percent(trained['accuracy'])} on {trained['pairs']} pairs"
    if "model_gold_accuracy" in trained:
        text += f"; against the gold rule {percent(trained['model_gold_accuracy'])}"
        if "annotator_gold_agreement" in trained:
            text += f" (the annotators: {percent(trained['annotator_gold_agreement'])})"
    stopping = early_stopping_words(figures.get("summary", {}))
    text += (f"; {stopping}" if stopping else "") + "."
    flag = reward_flag(trained["accuracy"], untrained.get("accuracy"))
    return text + (f" {flag}" if flag else "")


def reward_flag(accuracy: float, untrained: float | None) -> str | None:
    """A warning a reader must not miss: a reward model below chance, or no better than its start."""
    if accuracy < 0.5:
        return (
            "Warning: below chance (50%): it ranks held-out pairs backwards more often than not; check its data "
            "before a policy trains against it."
        )
    if untrained is not None and accuracy <= untrained:
        return (
            f"Warning: no better than its untrained start ({percent(untrained)}): nothing it learned carries to "
            "held-out pairs (more pairs, another learning rate or more steps)."
        )
    return None


def early_stopping_words(summary: dict[str, Any]) -> str | None:
    """What early stopping changed in a training run, from its summary (None if it did nothing)."""
    stopped, kept = summary.get("early_stopped_at"), summary.get("best_weights_from_step")
    parts = []
    if stopped:
        parts.append(f"early stopping ended training at step {stopped}")
    if kept:
        parts.append(f"kept the weights of step {kept} (lowest validation loss)")
    return " and ".join(parts) or None


def methods_sentence(found: Leader | None, rows: list[dict[str, Any]], kl: bool = False) -> str | None:
    """The best method (or that none leads by more than noise), its right answers (and KL to SFT),
    the others' gains, and whether the gain is correctness or style."""
    if found is None:
        return None
    best = found.best
    text = leader_sentence(found)
    if "right_share" in best:
        text += f", right answers {percent(best['sft right_share'])} -> {percent(best['right_share'])}"
    if kl and best.get("kl_to_sft") is not None:
        text += f", KL to SFT {best['kl_to_sft']:.2f}"
    others = [f"{r['method']} {r['gold_gain']:+.2f}" for r in rows if r is not best and r.get("gold_gain") is not None]
    text += f"; the others: {', '.join(others)}." if others else "."
    kind = gain_kind(best)
    return text + (f" {kind}" if kind else "")


def rag_sentence(root: Path, folder: str = "eval") -> str | None:
    figures = _json(root / folder / "eval.json")
    held = (figures or {}).get("parts", {}).get("heldout", {})
    if "sft" not in held or "sft+rag" not in held:
        return None
    n = held["sft+rag"].get("n")
    return (
        f"RAG: held-out facts answered {percent(held['sft']['contains'])} by SFT alone -> "
        f"{percent(held['sft+rag']['contains'])} with retrieval" + (f" on {n} questions." if n else ".")
    )


def flags(root: Path) -> list[str]:
    """What went wrong, in sentences that say what to try (each round's runs too)."""

    def ran(folder: str) -> bool:
        return (root / folder).is_dir()

    out = []
    for folder in round_keys("reward", ran):
        out += _reward_flags(root, folder)
    for method in ONLINE:
        for folder in round_keys(method, ran):
            out += _online_flags(root, method, folder)
    for method in METHODS:
        for folder in round_keys(method, ran):
            out += _right_answers_flag(root, method, folder)
    return out


def _right_answers_flag(root: Path, method: str, folder: str) -> list[str]:
    figures = comparison_of(root, method, folder)
    if not figures or "right_share" not in figures[method] or "right_share" not in figures["sft"]:
        return []
    before, after = figures["sft"]["right_share"], figures[method]["right_share"]
    if before - after < 0.05:
        return []
    start = "SFT's" if folder == method else "its starting policy's"
    return [
        f"{folder}: right answers fell from {percent(before)} ({start}) to {percent(after)} on "
        f"{figures['prompts']} held-out prompts: it traded correctness for what its reward rewards; a stronger KL "
        "penalty, fewer steps, or more rankings that put right answers above wrong ones."
    ]


def _reward_flags(root: Path, folder: str) -> list[str]:
    out = []
    evals = [r for r in read_metrics(root / folder / "metrics.jsonl") if "eval_accuracy" in r]
    kept_step = ((_json(root / folder / "eval.json") or {}).get("summary") or {}).get("best_weights_from_step")
    who = "The reward model" if folder == "reward" else f"{folder}: the reward model"
    if len(evals) >= 2:
        best = max(evals, key=lambda r: r["eval_accuracy"])
        kept = next((r for r in evals if r["step"] == kept_step), evals[-1])  # the weights the run ended with
        if best["eval_accuracy"] - kept["eval_accuracy"] >= 0.02:
            which = "the weights of that step were kept" if kept_step else "its last weights were kept"
            out.append(
                f"{who}'s validation accuracy fell during training, from {best['eval_accuracy']:.3f} "
                f"(step {best['step']}) to {kept['eval_accuracy']:.3f} (step {kept['step']}), and {which}: it "
                "overfits; set training.early_stopping_patience (it ends with the weights of the lowest validation "
                "loss) or fewer epochs."
            )
    return out


def _online_flags(root: Path, method: str, folder: str) -> list[str]:
    """KL far above target, answers growing until cut off, reward hacking: one online run (a round's)."""
    out: list[str] = []
    rows = read_metrics(root / folder / "metrics.jsonl")
    config = root / folder / "config.yaml"
    if not rows or not config.is_file():
        return out
    start = "SFT" if folder == method else "its starting policy"
    target = float((yaml.safe_load(config.read_text()) or {}).get("kl", {}).get("target", 0) or 0)
    tail = rows[-10:]
    kl = sum(r["kl"] for r in tail) / len(tail)
    if target > 0 and kl > 2 * target:
        out.append(
            f"{folder}: KL to {start} averaged {kl:.1f} nats over the last {len(tail)} steps, {kl / target:.1f}x "
            f"kl.target ({target:g}): the policy drifted far; raise kl.kl_coef, use kl.controller=adaptive or lower "
            "optim.policy_lr."
        )
    first, last = rows[0].get("no_eos_share"), tail[-1].get("no_eos_share")
    if first is not None and last is not None and last - first >= 0.1:
        out.append(
            f"{folder}: {percent(last)} of the responses end without EOS at the end of training "
            f"({percent(first)} at the start): answers grow until cut off; raise reward.missing_eos_penalty."
        )
    figures = comparison_of(root, method, folder)
    if figures and "rm_mean" in figures[method] and "gold_mean" in figures[method]:
        before, tuned = figures["sft"], figures[method]
        if (
            tuned["rm_mean"] > before["rm_mean"] and before["gold_mean"] - tuned["gold_mean"] >= 0.05
        ):  # not rounding noise
            out.append(
                f"{folder}: the reward model's score rose ({before['rm_mean']:.2f} -> {tuned['rm_mean']:.2f}) while "
                f"the gold score fell ({before['gold_mean']:.2f} -> {tuned['gold_mean']:.2f}): reward hacking; "
                "more rankings where the reward model errs, a stronger KL penalty, or fewer steps."
            )
    return out


def headline(root: Path, steps: dict[str, dict[str, Any]], rows: list[dict[str, Any]] | None = None) -> list[str]:
    """Markdown lines: one sentence per stage, then the flags (`rows`: the methods' rows, if already read)."""
    rounds = rounds_sentence(round_rows(root, steps))
    rows = method_rows(root, steps) if rows is None else rows
    methods = methods_sentence(leader(root, rows), rows)
    candidates = (sft_sentence(root), reward_sentence(root), methods, rounds, rag_sentence(root))
    sentences = [s for s in candidates if s]
    lines = [f"- {s}" for s in sentences]
    problems = flags(root)
    if problems:
        lines += ["", "**What went wrong**", ""] + [f"- {p}" for p in problems]
    return lines
