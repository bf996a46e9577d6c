"""Rewards beyond one learned model: built-in rules and user functions, weighted and aggregated
with a reward model (sum, normalize_then_sum, None = no opinion), in PPO, GRPO and RLOO; task
accuracy on held-out prompts; exact resume; bad functions refused (exit 2) or stopped (exit 3)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import ppo_world
import pytest
import torch
import yaml

import stages.ppo as ppo_stage
from align.config.loader import validate
from align.config.ppo import PPOConfig
from align.errors import AlignInputError, AlignRunError
from align.rl import rules
from align.rl.group import group_advantages
from align.rl.rewards import aggregate_sources
from align.rundir import read_metrics

NAN = float("nan")
BREVITY = '''
def brevity(prompts, completions, reference=None, **columns):
    """Shorter is better; no opinion where the record has no reference."""
    return [None if ref is None else -len(c.split()) / 10 for c, ref in zip(completions, reference)]

def wrong_count(prompts, completions, **columns):
    return [0.0]

def not_finite(prompts, completions, **columns):
    return [float("nan")] * len(completions)

def raises(prompts, completions, **columns):
    raise KeyError("boom")

def no_columns(prompts, completions):
    return [0.0] * len(completions)
'''


# -- the math, by hand -------------------------------------------------------------------------
def test_aggregate_sum_with_none_by_hand():
    values = torch.tensor([[1.0, NAN, 3.0, NAN], [0.5, 1.0, NAN, NAN]])  # 2 sources x 4 samples
    out = aggregate_sources(values, torch.tensor([2.0, 1.0]), "sum")
    # 2*1 + 0.5 | None + 1 | 2*3 + None | nothing said: 0
    assert out.tolist() == pytest.approx([2.5, 1.0, 6.0, 0.0])


def test_aggregate_normalize_then_sum_by_hand():
    values = torch.tensor([[1.0, NAN, 3.0], [0.5, 1.0, NAN]])
    out = aggregate_sources(values, torch.tensor([2.0, 1.0]), "normalize_then_sum")
    # source 0 over {1, 3}: mean 2, sample std sqrt(2) -> -1/sqrt2, _, +1/sqrt2
    # source 1 over {0.5, 1}: mean 0.75, sample std sqrt(0.125) -> -1/sqrt2, +1/sqrt2, _
    r = 1 / math.sqrt(2)
    assert out.tolist() == pytest.approx([2 * -r + -r, r, 2 * r], abs=1e-6)
    # one value, or all equal: centred, not divided by 0
    flat = aggregate_sources(torch.tensor([[4.0, 4.0], [NAN, 7.0]]), torch.tensor([1.0, 1.0]), "normalize_then_sum")
    assert flat.tolist() == pytest.approx([0.0, 0.0])


def test_normalize_then_sum_standardises_within_each_prompts_group_by_hand():
    # 2 sources x 2 groups of 2 samples: the rule says 0/1, the model speaks on another scale
    values = torch.tensor([[1.0, 0.0, 1.0, 1.0], [10.0, 30.0, 5.0, NAN]])
    out = aggregate_sources(values, torch.tensor([1.0, 1.0]), "normalize_then_sum", group_size=2)
    r = 1 / math.sqrt(2)  # two values: +-(half the gap) / (gap / sqrt2)
    # group 1: rule (1, 0) -> (+r, -r); model (10, 30) -> (-r, +r)
    # group 2: rule (1, 1) all equal -> 0, 0; model spoke once -> centred 0, and silent on the last
    assert out.tolist() == pytest.approx([0.0, 0.0, 0.0, 0.0], abs=1e-6)
    lopsided = aggregate_sources(values, torch.tensor([2.0, 1.0]), "normalize_then_sum", group_size=2)
    assert lopsided.tolist() == pytest.approx([2 * r - r, -2 * r + r, 0.0, 0.0], abs=1e-6)
    # over the batch (group_size 1) the same values standardise together, as before
    batch = aggregate_sources(values, torch.tensor([1.0, 0.0]), "normalize_then_sum")
    mean, std = 0.75, 0.5  # the rule over (1, 0, 1, 1): sample std sqrt(0.25)
    assert batch.tolist() == pytest.approx([(v - mean) / std for v in (1, 0, 1, 1)], abs=1e-6)


def test_group_advantages_of_an_aggregate_with_none_by_hand():
    values = torch.tensor([[1.0, NAN, 3.0, 0.0], [0.5, 1.0, NAN, NAN]])
    rewards = aggregate_sources(values, torch.tensor([2.0, 1.0]), "sum")  # [2.5, 1.0, 6.0, 0.0]
    # grpo, groups of 2: (2.5, 1.0) mean 1.75 std 1.0607; (6.0, 0.0) mean 3 std 4.2426
    expected = [0.75 / (1.0606602 + 1e-4), -0.75 / (1.0606602 + 1e-4), 3 / (4.2426407 + 1e-4), -3 / (4.2426407 + 1e-4)]
    assert group_advantages(rewards, 2, "grpo").tolist() == pytest.approx(expected, rel=1e-5)
    # rloo: r_i - mean of the others
    assert group_advantages(rewards, 2, "rloo").tolist() == pytest.approx([1.5, -1.5, 6.0, -6.0])


def test_rules_by_hand():
    assert rules.normalize_answer("The answer: 1,024.") == "the answer 1024"
    assert rules.exact_answer(" Paris. ", "paris") == 1.0 and rules.exact_answer("Paris, France", "Paris") == 0.0
    assert rules.exact_answer("3.50", "3.5") == 1.0 and rules.exact_answer("x", None) is None
    assert rules.contains_answer("Sure! 15 + 9 = 24.", "24") == 1.0
    assert rules.contains_answer("It is 124.", "24") == 0.0  # whole words only
    assert rules.last_number("15 + 9 = 24, I think", "24") == 1.0 and rules.last_number("24 or 25", "24") == 0.0
    assert rules.last_number("no digits", "24") == 0.0 and rules.last_number("7", "seven") is None
    assert rules.regex_match("Answer: 42", r"^Answer: \d+$") == 1.0 and rules.regex_match("42", r"^Answer") == 0.0
    assert rules.length_score("a b c d", 4) == 1.0 and rules.length_score("a b", 4) == 0.5
    assert rules.length_score(" ".join("x" * 12), 4) == 0.0


# -- the loop --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources_world")
    world = ppo_world.build(root / "w")
    for name in ("train", "test"):  # the prompts with a reference column (every fourth without one)
        rows = [json.loads(line) for line in world[name].read_text().splitlines()]
        path = root / f"{name}_ref.jsonl"
        path.write_text(
            "".join(json.dumps({**r, **({"reference": "the"} if i % 4 else {})}) + "\n" for i, r in enumerate(rows))
        )
        world[name] = path
    functions = root / "outside" / "my_rewards.py"  # a file outside the project
    functions.parent.mkdir()
    functions.write_text(BREVITY)
    world["functions"] = functions
    return world


def sources(world, **extra) -> dict:
    return {
        "sources": [
            {"model": "reward_model", "weight": 1.0},
            {"rule": "contains_answer", "weight": 2.0},
            {"function": f"{world['functions']}:brevity", "weight": 0.5},
        ],
        **extra,
    }


def config(world, out, **sections) -> PPOConfig:
    return validate(PPOConfig, ppo_world.config_dict(world, out, **sections))


GROUP = {"rollout": {"batch_size": 2, "samples_per_prompt": 4}}


@pytest.mark.parametrize("estimator", ["gae", "grpo", "rloo"])
def test_three_kinds_of_source_train_and_are_logged(world, tmp_path, estimator):
    out = tmp_path / estimator
    extra = {} if estimator == "gae" else GROUP
    mode = "normalize_then_sum" if estimator == "grpo" else "sum"
    ppo_stage.run(
        config(
            world,
            out,
            advantage={"estimator": estimator},
            reward=sources(world, aggregate=mode),
            schedule={"steps": 2, "accuracy_steps": 1, "save_steps": None},
            eval={"max_prompts": 4},
            **extra,
        )
    )
    rows = read_metrics(out / "metrics.jsonl")
    for row in rows:
        for label in ("rm", "contains_answer", "brevity"):
            assert math.isfinite(row[f"reward/{label}"]) and f"reward/{label}_std" in row, (label, row)
        assert 0 <= row.get("reward/brevity_none_share", 0) < 1  # no opinion on records without a reference
        assert 0.0 <= row["heldout/contains_answer"] <= 1.0
    if estimator == "gae":  # 16 prompts drawn, a quarter of them without a reference
        assert any(0 < row.get("reward/brevity_none_share", 0) < 1 for row in rows)
    if mode == "sum":  # the logged aggregate is the weighted sum of the sources (means over the batch)
        first = rows[0]

        def spoken(name):  # a source's mean is over the samples it spoke about; silent ones add 0
            return first[f"reward/{name}"] * (1 - first.get(f"reward/{name}_none_share", 0.0))

        assert first["rm_score"] == pytest.approx(
            spoken("rm") + 2 * spoken("contains_answer") + 0.5 * spoken("brevity"), rel=1e-5, abs=1e-6
        )
    figures = json.loads((out / "eval.json").read_text())
    method = {"gae": "ppo"}.get(estimator, estimator)
    assert "accuracy_contains_answer" in figures["sft"] and "accuracy_brevity" in figures[method]
    report = (out / "report.md").read_text()
    assert "accuracy_contains_answer" in report and "task_accuracy.png" in report


def test_rules_alone_need_no_reward_model_and_resume_exactly(world, tmp_path, monkeypatch):
    rules_only = {"sources": [{"rule": "contains_answer"}, {"rule": "length", "target_words": 3, "weight": 0.5}]}
    sections = {
        "reward_model": None,
        "advantage": {"estimator": "grpo"},
        "reward": rules_only,
        "eval": {"enabled": False},
        **GROUP,
    }
    ppo_stage.run(config(world, tmp_path / "straight", **sections))
    real_step, calls = ppo_stage.ppo_step, []

    def crash_at_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(ppo_stage, "ppo_step", crash_at_third)
    with pytest.raises(KeyboardInterrupt):
        ppo_stage.run(config(world, tmp_path / "crashed", **sections))
    monkeypatch.setattr(ppo_stage, "ppo_step", real_step)
    ppo_stage.run(config(world, tmp_path / "crashed", output={"resume": "auto"}, **sections))
    straight = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    resumed = read_metrics(tmp_path / "crashed" / "metrics.jsonl")
    for key, value in straight[2].items():
        if not key.startswith("time"):
            assert resumed[2][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    with pytest.raises(AlignInputError, match="critic.init: policy"):
        config(world, tmp_path / "x", reward_model=None, reward=rules_only)


@pytest.mark.parametrize(
    "function, error, words",
    [
        ("missing.py:brevity", AlignInputError, "no file"),
        ("{f}:nothing_here", AlignInputError, "no function 'nothing_here'"),
        ("{f}:no_columns", AlignInputError, "must take (prompts, completions, **columns)"),
        ("builtins:max", AlignInputError, "max (its signature cannot be read) must take"),
        ("{f}:wrong_count", AlignRunError, "returned 1 values for"),
        ("{f}:not_finite", AlignRunError, "rewards must be finite"),
        ("{f}:raises", AlignRunError, "raised KeyError"),
    ],
)
def test_bad_functions_refused_or_stopped_before_any_update(world, tmp_path, function, error, words):
    spec = {"sources": [{"function": function.format(f=world["functions"])}]}
    out = tmp_path / "run"
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        ppo_stage.run(config(world, out, reward=spec, advantage={"estimator": "grpo"}, **GROUP))
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())
    if error is AlignRunError:  # the run stopped in its first step, before any update or checkpoint
        assert not (out / "final").exists()


def test_a_user_function_outside_the_project_trains_from_the_shell(world, tmp_path):
    out = tmp_path / "shell"
    data = ppo_world.config_dict(
        world,
        out,
        advantage={"estimator": "rloo"},
        reward=sources(world),
        schedule={"steps": 1, "save_steps": None},
        eval={"enabled": False},
        **GROUP,
    )
    (tmp_path / "ppo.yaml").write_text(yaml.safe_dump(data))
    env = {**os.environ, "COLUMNS": "200"}
    run = [sys.executable, "-m", "align", "ppo", "--config", str(tmp_path / "ppo.yaml")]
    done = subprocess.run(run, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "reward/brevity" in read_metrics(out / "metrics.jsonl")[0]
    bad = subprocess.run(
        [*run, f"reward.sources=[{{function: {world['functions']}:raises}}]", f"output.output_dir={tmp_path / 'bad'}"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert bad.returncode == 3 and "raised KeyError" in bad.stderr and "Traceback" not in bad.stderr
    missing = subprocess.run(
        [*run, "reward.sources=[{function: nowhere.py:f}]", f"output.output_dir={tmp_path / 'missing'}"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert missing.returncode == 2 and "no file" in missing.stderr and not (tmp_path / "missing").exists()


def test_rule_only_group_methods_are_advised_to_put_the_kl_in_the_loss(tmp_path):
    from align.ppo.health import setup_advice

    world = ppo_world.build(tmp_path / "w")

    def advice(**sections):
        data = ppo_world.config_dict(world, tmp_path / "out", **sections)
        return setup_advice(validate(PPOConfig, data))

    rule = {"sources": [{"rule": "length", "target_words": 4}]}
    grpo = {"estimator": "grpo"}
    assert len(advice(reward=rule, advantage=grpo, rollout={"samples_per_prompt": 2}, critic={"init": "policy"})) == 1
    loss = {"apply_to": "loss", "estimator": "k3"}
    assert (
        advice(reward=rule, advantage=grpo, rollout={"samples_per_prompt": 2}, kl=loss, critic={"init": "policy"}) == []
    )
    with_model = {"sources": [{"model": "reward_model"}, {"rule": "length", "target_words": 4}]}
    assert advice(reward=with_model, advantage=grpo, rollout={"samples_per_prompt": 2}) == []  # dense signal
    assert advice(reward=rule, critic={"init": "policy"}) == []  # PPO's critic: no group standardisation
