"""The report's headline: sentences with before -> after and the held-out size, and the planted
problems flagged (a reward model whose validation accuracy fell, PPO with KL 5x its target,
more responses cut off without EOS, reward up while gold went down); a clean run has no flag."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from align.pipeline.headline import flags, headline


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in obj))
    elif path.suffix == ".yaml":
        path.write_text(yaml.safe_dump(obj))
    else:
        path.write_text(json.dumps(obj))


def pipeline_dir(root: Path, *, reward_accuracies, ppo_kl: float, no_eos: tuple[float, float], rm_gold) -> Path:
    per_task = {"fact_qa": {"n": 40}, "rewrite": {"n": 46}}
    write(
        root / "sft" / "eval.json",
        {
            "models": {
                "base": {"exact_match": 0.03, "token_f1": 0.14},
                "tuned": {"exact_match": 0.62, "token_f1": 0.75, "per_task": per_task, "forgetting_ratio": 1.5},
            }
        },
    )
    write(
        root / "reward" / "eval.json",
        {
            "models": {
                "untrained": {"test": {"accuracy": 0.6, "pairs": 171}},
                "trained": {
                    "test": {
                        "accuracy": 0.86,
                        "pairs": 171,
                        "model_gold_accuracy": 0.88,
                        "annotator_gold_agreement": 0.98,
                    }
                },
            }
        },
    )
    write(
        root / "reward" / "metrics.jsonl",
        [{"step": 80 * (i + 1), "eval_accuracy": a} for i, a in enumerate(reward_accuracies)],
    )
    write(root / "ppo" / "config.yaml", {"kl": {"target": 2.0}})
    write(
        root / "ppo" / "metrics.jsonl",
        [{"step": s, "kl": ppo_kl, "no_eos_share": no_eos[0] if s == 1 else no_eos[1]} for s in range(1, 26)],
    )
    (rm_sft, rm_ppo), (gold_sft, gold_ppo) = rm_gold
    write(
        root / "ppo" / "eval.json",
        {
            "prompts": 64,
            "sft": {"rm_mean": rm_sft, "gold_mean": gold_sft, "right_share": 0.73},
            "ppo": {"rm_mean": rm_ppo, "gold_mean": gold_ppo, "right_share": 0.7, "kl_to_reference": ppo_kl},
        },
    )
    return root


def test_planted_problems_are_flagged(tmp_path):
    root = pipeline_dir(
        tmp_path,
        reward_accuracies=[0.80, 0.845, 0.81],
        ppo_kl=10.0,
        no_eos=(0.05, 0.4),
        rm_gold=((0.5, 4.0), (1.5, 1.2)),
    )
    found = flags(root)
    assert len(found) == 4, found
    assert "from 0.845 (step 160) to 0.810 (step 240)" in found[0] and "early_stopping_patience" in found[0]
    assert "ppo: KL to SFT averaged 10.0 nats over the last 10 steps, 5.0x kl.target (2)" in found[1]
    assert "40% of the responses end without EOS" in found[2] and "missing_eos_penalty" in found[2]
    assert "score rose (0.50 -> 4.00) while the gold score fell (1.50 -> 1.20): reward hacking" in found[3]
    lines = headline(root, {"ppo": {"seconds": 60.0}})
    assert lines[0] == (
        "- SFT: exact match 3% -> 62% on 86 held-out prompts (token F1 0.14 -> 0.75); "
        "forgetting ratio 1.50 (1.0 = nothing forgotten)."
    )
    assert lines[1].startswith("- Reward model: held-out pair accuracy 60% (untrained) -> 86% on 171 pairs")
    assert lines[2].startswith(
        "- Best alignment method: ppo, held-out gold score 1.50 (SFT) -> 1.20 (-0.30) on 64 prompts"
    )
    assert "**What went wrong**" in lines


def test_a_clean_run_has_no_flag(tmp_path):
    root = pipeline_dir(
        tmp_path,
        reward_accuracies=[0.80, 0.84, 0.85],
        ppo_kl=2.5,
        no_eos=(0.05, 0.06),
        rm_gold=((0.5, 4.0), (1.5, 1.9)),
    )
    assert flags(root) == [] and "**What went wrong**" not in headline(root, {})


def test_early_stopping_is_said_and_its_kept_weights_are_not_flagged(tmp_path):
    """A reward run that fell after its best evaluation but stopped early with that step's weights:
    the headline says what early stopping did, and there is nothing to flag; had it kept a step
    past the best, the flag names that kept step."""
    root = pipeline_dir(
        tmp_path,
        reward_accuracies=[0.80, 0.845, 0.81],
        ppo_kl=2.5,
        no_eos=(0.05, 0.06),
        rm_gold=((0.5, 4.0), (1.5, 1.9)),
    )
    figures = json.loads((root / "reward" / "eval.json").read_text())
    figures["summary"] = {"early_stopped_at": 240, "best_weights_from_step": 160, "global_steps": 240}
    write(root / "reward" / "eval.json", figures)
    assert flags(root) == []
    lines = headline(root, {"ppo": {"seconds": 60.0}})
    assert lines[1].endswith(
        "; early stopping ended training at step 240 and kept the weights of step 160 (lowest validation loss)."
    )
    figures["summary"]["best_weights_from_step"] = 80  # lowest loss at step 80: accuracy 0.80 there
    write(root / "reward" / "eval.json", figures)
    (found,) = flags(root)
    assert "from 0.845 (step 160) to 0.800 (step 80), and the weights of that step were kept" in found


def test_a_later_rounds_drift_and_reward_hacking_are_flagged(tmp_path):
    """Round 2's PPO (ppo-r2) is judged against its own start, round 1's policy."""
    root = pipeline_dir(
        tmp_path, reward_accuracies=[0.80, 0.85], ppo_kl=1.9, no_eos=(0.05, 0.05), rm_gold=((0.5, 2.0), (1.5, 2.0))
    )
    assert flags(root) == []
    write(root / "ppo-r2" / "config.yaml", {"kl": {"target": 2.0}})
    write(root / "ppo-r2" / "metrics.jsonl", [{"step": s, "kl": 8.0} for s in range(1, 26)])
    write(
        root / "ppo-r2" / "eval.json",
        {"prompts": 64, "sft": {"rm_mean": 1.2, "gold_mean": 2.0}, "ppo": {"rm_mean": 3.6, "gold_mean": 1.2}},
    )
    found = flags(root)
    assert len(found) == 2, found
    assert found[0].startswith("ppo-r2: KL to its starting policy averaged 8.0 nats over the last 10 steps, 4.0x")
    assert "ppo-r2: the reward model's score rose (1.20 -> 3.60) while the gold score fell (2.00 -> 1.20)" in found[1]


def two_methods(root: Path, gold_ppo: list[float], gold_grpo: list[float], *, right=(0.75, 0.75, 0.5)) -> Path:
    """ppo and grpo evaluated on the same 4 prompts (per-prompt gold in eval_samples.jsonl)."""
    sft_right, ppo_right, grpo_right = right
    for method, gold in (("ppo", gold_ppo), ("grpo", gold_grpo)):
        write(
            root / method / "eval.json",
            {
                "prompts": len(gold),
                "sft": {"gold_mean": 1.0, "right_share": sft_right, "polite_share": 0.25},
                method: {
                    "gold_mean": sum(gold) / len(gold),
                    "right_share": ppo_right if method == "ppo" else grpo_right,
                    "polite_share": 1.0,
                    "kl_to_reference": 3.0,
                },
            },
        )
        write(root / method / "eval_samples.jsonl", [{f"gold_{method}": g, "gold_sft": 1.0} for g in gold])
    return root


def test_the_best_method_is_named_only_when_its_lead_is_beyond_noise(tmp_path):
    """Paired differences ppo - grpo per prompt: [0.5, 0.5, 0.5, 0.5] (lead 0.5, stderr 0) names ppo;
    [1.0, -1.0, 1.0, -0.6] has mean 0.10, squared deviations 0.81 + 1.21 + 0.81 + 0.49 = 3.32, standard
    deviation sqrt(3.32 / 3) = 1.052, so its stderr is 0.526 and the lead is within noise."""
    from align.pipeline.methods import leader, method_rows

    clear = two_methods(tmp_path / "a", [2.0, 2.0, 2.0, 2.0], [1.5, 1.5, 1.5, 1.5])
    lines = headline(clear, {"ppo": {"seconds": 60.0}, "grpo": {"seconds": 60.0}})
    method_line = next(line for line in lines if "alignment method" in line or "clearly best" in line)
    assert method_line.startswith("- Best alignment method: ppo, held-out gold score 1.00 (SFT) -> 2.00 (+1.00)")

    close = two_methods(tmp_path / "b", [2.0, 1.0, 2.0, 1.4], [1.0, 2.0, 1.0, 2.0])
    found = leader(close, method_rows(close, {}))
    assert found.best["method"] == "ppo" and abs(found.lead - 0.10) < 1e-9
    assert abs(found.stderr - (3.32 / 3) ** 0.5 / 2) < 1e-9 and not found.clear
    method_line = next(line for line in headline(close, {}) if "clearly best" in line)
    assert "No method is clearly best: ppo leads grpo by 0.10 gold, within noise" in method_line
    assert "standard error of the paired difference is 0.53" in method_line


def test_the_gain_is_called_style_or_correctness(tmp_path):
    """Right answers 75% -> 75% with polite openings 25% -> 100%: style; 50% -> 75%: partly correctness."""
    root = two_methods(tmp_path / "a", [2.0, 2.0, 2.0, 2.0], [1.5, 1.5, 1.5, 1.5])
    text = " ".join(headline(root, {}))
    assert "ppo's gain is style, not correctness: polite openings 25% -> 100%, right answers +0 points." in text
    root = two_methods(tmp_path / "b", [2.0, 2.0, 2.0, 2.0], [1.5, 1.5, 1.5, 1.5], right=(0.5, 0.75, 0.5))
    assert "Part of ppo's gain is correctness (right answers +25 points)." in " ".join(headline(root, {}))


def test_falling_right_answers_and_a_reward_model_at_chance_are_said(tmp_path):
    """grpo's right answers 75% -> 50% is flagged; an untrained head under 50% is explained as chance."""
    root = two_methods(tmp_path, [2.0, 2.0, 2.0, 2.0], [1.5, 1.5, 1.5, 1.5])
    found = flags(root)
    assert found == [
        "grpo: right answers fell from 75% (SFT's) to 50% on 4 held-out prompts: it traded correctness for what its "
        "reward rewards; a stronger KL penalty, fewer steps, or more rankings that put right answers above wrong ones."
    ]
    write(
        root / "reward" / "eval.json",
        {
            "models": {
                "untrained": {"test": {"accuracy": 0.34, "pairs": 50}},
                "trained": {"test": {"accuracy": 0.8, "pairs": 50}},
            }
        },
    )
    reward_line = next(line for line in headline(root, {}) if "Reward model" in line)
    assert "34% (untrained: a random head, chance is 50%) -> 80% on 50 pairs" in reward_line
