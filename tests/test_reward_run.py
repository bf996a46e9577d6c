"""`align reward` end to end on a small synthetic world: learning, the run-dir contract, exact resume
after a crash, partial updates leaving frozen weights bit-identical, and exit 2 on untrainable data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from test_reward_scorer import _tiny_llama
from transformers import TrainerCallback

from align.config.reward import RewardConfig
from align.reward.scorer import RewardScorer
from align.rundir import read_metrics


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """gold.jsonl + preference/{train,test}.jsonl of generated (non-fact) tasks, and a tiny random Llama."""
    from align.demo.tasks import arithmetic_items, preference_rows, rewrite_items, sort_items

    root = tmp_path_factory.mktemp("reward-world")
    (root / "preference").mkdir()
    rng = random.Random(0)
    rows = preference_rows(arithmetic_items(20, rng) + sort_items(20, rng) + rewrite_items(20, rng))
    rng.shuffle(rows)

    def dump(rs):
        return "".join(json.dumps(r) + "\n" for r in rs)

    (root / "gold.jsonl").write_text(dump(rows))
    (root / "preference" / "train.jsonl").write_text(dump(rows[:48]))
    (root / "preference" / "test.jsonl").write_text(dump(rows[48:]))
    _tiny_llama(root / "model")
    return root


def config(world: Path, out: Path, **sections) -> RewardConfig:
    base = {
        "model": {"name_or_path": str(world / "model")},
        "data": {
            "train": str(world / "preference" / "train.jsonl"),
            "test": str(world / "preference" / "test.jsonl"),
            "max_length": 128,
        },
        "simulate": {"noise": 0.1, "annotators": 1},
        "update": {"mode": "full"},
        "training": {
            "max_steps": 60,
            "batch_size": 8,
            "learning_rate": 3e-3,
            "logging_steps": 5,
            "warmup_ratio": 0.0,
            "lr_scheduler": "constant",
        },
        "eval": {"calibration_bins": 5},
        "output": {"output_dir": str(out), "report_to": ["none"]},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return RewardConfig.model_validate(base)


def run(world, out, callbacks=(), **sections):
    import stages.reward

    return stages.reward.run(config(world, out, **sections), callbacks=callbacks)


class CrashAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError(f"simulated crash after step {self.step}")


def test_learns_beyond_the_untrained_baseline_and_writes_the_run_dir(world, tmp_path):
    result = run(world, tmp_path / "run", data={"validation_fraction": 0.2}, simulate={"annotators": 2})
    out = result.run_dir
    for name in (
        "config.yaml",
        "env.json",
        "metrics.jsonl",
        "eval.json",
        "report.md",
        "data_stats.json",
        "data/rankings_train.jsonl",
        "data/rankings_test.jsonl",
        "final/reward_model.json",
        "final/config.json",
        "final/tokenizer_config.json",
        "calibration.png",
        "hist_trained.png",
    ):
        assert (out / name).exists(), name
    m = result.metrics
    assert m["test_trained_accuracy"] > m["test_untrained_accuracy"] + 0.1
    assert m["test_trained_kendall_tau"] > m["test_untrained_kendall_tau"]
    assert 0.9 <= m["test_annotator_gold_agreement"] <= 1.0  # noise 0.1 rarely flips a gold order
    figures = json.loads((out / "eval.json").read_text())["models"]["trained"]["test"]
    assert set(figures["accuracy_by_gap"]) <= {"1", "2", "3", "4", "5"} and figures["calibration"]["bins"]
    # the saved model scores like the evaluation did, and normalises with the saved statistics
    scorer = RewardScorer(out, normalize=True)
    raw = RewardScorer(out).score(["What is 2 + 2?"] * 2, ["4", "Sure! The answer is 4."])
    assert torch.allclose(
        scorer.score(["What is 2 + 2?"] * 2, ["4", "Sure! The answer is 4."]),
        (raw - scorer.meta.reward_mean) / scorer.meta.reward_std,
    )
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert losses[-1] < losses[0]
    from align.demo.gold import GoldPreference
    from align.reward.demo_data import breakdown

    kinds = breakdown(out, GoldPreference.from_world(world))
    assert kinds["all"]["pairs"] == kinds["right-vs-wrong"]["pairs"] + kinds["style-only"]["pairs"] > 0
    split = [kinds.get(f"right-vs-{kind}", {"pairs": 0})["pairs"] for kind in ("near-miss", "off-topic")]
    assert sum(split) == kinds["right-vs-wrong"]["pairs"]


def test_resume_after_crash_reproduces_uninterrupted_losses(world, tmp_path):
    short = {"training": {"max_steps": 6, "save_steps": 3, "logging_steps": 1}, "eval": {"compare_untrained": False}}
    straight = run(world, tmp_path / "straight", **short).run_dir
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(world, crashed, callbacks=[CrashAt(5)], **short)
    assert (crashed / "checkpoints" / "step-3" / "COMPLETE.json").is_file()
    run(world, crashed, output={"resume": "auto"}, **short)

    def loss(d):
        return {r["step"]: r["loss"] for r in read_metrics(d / "metrics.jsonl") if "loss" in r}

    reference, resumed = loss(straight), loss(crashed)
    assert sorted(resumed) == sorted(reference) == [1, 2, 3, 4, 5, 6]
    for step in reference:
        assert resumed[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-6), step


def test_partial_update_leaves_frozen_weights_bit_identical(world, tmp_path):
    from safetensors.torch import load_file

    result = run(
        world,
        tmp_path / "run",
        update={"mode": "partial", "partial": {"trainable_layers": 1}},
        training={"max_steps": 4},
        eval={"compare_untrained": False},
    )
    base = load_file(world / "model" / "model.safetensors")
    tuned = load_file(result.run_dir / "final" / "model.safetensors")
    assert torch.equal(base["model.layers.0.self_attn.q_proj.weight"], tuned["model.layers.0.self_attn.q_proj.weight"])
    assert not torch.equal(
        base["model.layers.1.self_attn.q_proj.weight"], tuned["model.layers.1.self_attn.q_proj.weight"]
    )
    assert "score.weight" in tuned and "lm_head.weight" not in tuned


def test_lora_is_merged_into_a_full_final_model(world, tmp_path):
    result = run(
        world,
        tmp_path / "run",
        update={"mode": "lora", "lora": {"r": 4}},
        training={"max_steps": 4},
        eval={"compare_untrained": False},
    )
    final = result.run_dir / "final"
    assert (final / "model.safetensors").is_file() and not (final / "adapter_config.json").exists()
    assert RewardScorer(final).score(["q"], ["a"]).shape == (1,)


def test_untrainable_data_exits_2_with_counts(world, tmp_path, capsys):
    import yaml

    from align.cli import main

    rankings = tmp_path / "tied.jsonl"
    rankings.write_text(
        "".join(json.dumps({"prompt": f"q{i}", "responses": ["a", "b"], "ranks": [2, 2]}) + "\n" for i in range(5))
    )
    path = tmp_path / "reward.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": str(world / "model")},
                "data": {"train": str(rankings)},
                "eval": {"test_fraction": 0},
                "output": {"output_dir": str(tmp_path / "out")},
            }
        )
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["reward", "--config", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no training pairs" in err and "5 records, 5 rankings all tied" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing was created for a run that cannot start


def test_plackett_luce_learns_from_whole_rankings(world, tmp_path):
    """loss plackett_luce trains on each 4-way ranking at once (no pairs), beats the untrained
    baseline by as much as pairs do here, and its validation loss is the listwise one."""
    result = run(
        world, tmp_path / "run", loss="plackett_luce", data={"validation_fraction": 0.2}, simulate={"annotators": 2}
    )
    m = result.metrics
    assert m["test_trained_accuracy"] > m["test_untrained_accuracy"] + 0.1
    assert m["test_trained_kendall_tau"] > m["test_untrained_kendall_tau"]
    records = read_metrics(result.run_dir / "metrics.jsonl")
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0]
    assert any("eval_loss" in r for r in records) and any("accuracy" in r for r in records)


def test_plackett_luce_on_pairs_exits_2_before_any_run_dir(world, tmp_path, capsys):
    import yaml

    from align.cli import main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "a", "rejected": "b"}) + "\n" for i in range(8)))
    path = tmp_path / "reward.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": str(world / "model")},
                "data": {"train": str(pairs)},
                "loss": "plackett_luce",
                "output": {"output_dir": str(tmp_path / "out")},
            }
        )
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["reward", "--config", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "plackett_luce learns from whole rankings" in err and "loss: bradley_terry" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_reliability_weights_find_the_random_annotator(world, tmp_path):
    """Four simulated annotators, the last ranking at random: annotator_weights=reliability gives it a
    weight near 0 and the three others near 1, saved in eval.json; the model still learns."""
    result = run(
        world,
        tmp_path / "run",
        annotator_weights="reliability",
        simulate={"annotators": 4, "random_annotators": 1},
    )
    weights = json.loads((result.run_dir / "eval.json").read_text())["summary"]["annotator_weights"]
    assert set(weights) == {"sim-0", "sim-1", "sim-2", "sim-3"}
    assert weights["sim-3"]["weight"] < 0.3 < 0.7 < min(weights[n]["weight"] for n in ("sim-0", "sim-1", "sim-2"))
    assert result.metrics["test_trained_accuracy"] > result.metrics["test_untrained_accuracy"] + 0.1


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"simulate": {"annotators": 1}}, "needs rankings from at least 2 annotators; simulate.annotators is 1"),
        (
            {"rankings_of_one": True},
            "needs rankings from at least 2 annotators on shared items; the train data has only 'solo'",
        ),
    ],
)
def test_reliability_weights_of_one_annotator_exit_2(world, tmp_path, capsys, setting, message):
    import yaml

    from align.cli import main

    body = {
        "model": {"name_or_path": str(world / "model")},
        "annotator_weights": "reliability",
        "output": {"output_dir": str(tmp_path / "out")},
    }
    if setting.get("rankings_of_one"):
        rankings = tmp_path / "one.jsonl"
        rankings.write_text(
            "".join(
                json.dumps({"prompt": f"q{i}", "responses": ["a", "b"], "ranks": [1, 2], "annotator": "solo"}) + "\n"
                for i in range(6)
            )
        )
        body["data"] = {"train": str(rankings)}
    else:
        body["data"] = {"train": str(world / "preference" / "train.jsonl")}
        body["simulate"] = setting["simulate"]
    path = tmp_path / "reward.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(SystemExit) as exit_info:
        main(["reward", "--config", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("loss", ["bradley_terry", "plackett_luce"])
def test_an_ensemble_of_heads_learns_saves_and_says_how_sure_it_is(world, tmp_path, loss):
    """heads=4: one backbone, four bootstrapped heads; the reward is their mean, with_std their spread;
    final/ reloads as four heads, and a critic started from it reads their mean."""
    result = run(world, tmp_path / "run", loss=loss, heads=4, simulate={"annotators": 2})
    m = result.metrics
    assert m["heads"] == 4 and m["test_trained_accuracy"] > m["test_untrained_accuracy"] + 0.1
    scorer = RewardScorer(result.run_dir)
    assert scorer.meta.heads == 4 and scorer.heads == 4
    prompts, responses = ["What is 2 + 2?", "What is 3 + 4?", "Sort: b a"], ["4", "Sure! It is 9.", "a b"]
    each = scorer.score_heads(prompts, responses)
    mean, std = scorer.score(prompts, responses, with_std=True)
    assert each.shape == (3, 4) and mean.shape == std.shape == (3,)
    assert torch.allclose(mean, each.mean(1)) and torch.allclose(std, each.std(1, correction=0))
    assert torch.allclose(scorer.score(prompts, responses), mean)
    assert bool((std > 0).all())  # the bootstrap made the heads differ
    from align.rl.value_model import critic_from_sequence_classifier

    critic = critic_from_sequence_classifier(scorer.model)
    head = scorer.model.score
    assert torch.allclose(critic.value_head.weight, head.weight.mean(0, keepdim=True))


def test_one_head_scores_with_zero_spread(world, tmp_path):
    result = run(world, tmp_path / "run", training={"max_steps": 4})
    mean, std = RewardScorer(result.run_dir).score(["What is 2 + 2?"], ["4"], with_std=True)
    assert mean.shape == (1,) and float(std[0]) == 0.0
