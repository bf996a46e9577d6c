"""The command line as a user meets it: help lists every stage; bad input exits 2 with one message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from align.config.stages import STAGE_CONFIGS

STAGES = list(STAGE_CONFIGS)  # the stage list the configs define, not a copy


def run_align(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "align", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_help_lists_every_subcommand():
    import re

    out = run_align("--help")
    assert out.returncode == 0, out.stderr
    listed = set(re.findall(r"^│ (\w+) ", out.stdout, flags=re.M))
    assert set(STAGES) | {"export", "env", "data", "models"} <= listed
    # what the methods are called now: every estimator and DPO named in the summary and ppo's line
    from typing import get_args

    from align.config.ppo import AdvantageSettings

    for estimator in get_args(AdvantageSettings.model_fields["estimator"].annotation):
        name = {"gae": "PPO"}.get(estimator, estimator.upper())
        assert name in out.stdout, name
    assert "DPO" in out.stdout and "benchmarks" in out.stdout
    assert "--verbose" in out.stdout  # a flag every stage takes, found nowhere else in the help
    from align.config.reward import RewardConfig

    reward = " ".join(run_align("reward", "--help").stdout.split())
    for loss in get_args(RewardConfig.model_fields["loss"].annotation):  # every loss the stage trains with
        assert loss.replace("_", " ").title().replace(" ", "-") in reward, loss


def test_data_help_names_each_command():
    out = run_align("data", "--help")
    for command in ("pull", "list", "make"):
        assert command in out.stdout


@pytest.mark.parametrize("stage", ["sft", "reward", "ppo", "eval", "pipeline", "demo"])
def test_stage_help(stage):
    out = run_align(stage, "--help")
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout


def _write(tmp_path, text: str):
    path = tmp_path / "sft.yaml"
    path.write_text(text)
    return str(path)


GOOD = "model:\n  name_or_path: gpt2\ndata:\n  train: org/data\n"


@pytest.mark.parametrize(
    "yaml_text, overrides, expected",
    [
        (GOOD + "training:\n  learnin_rate: 0.1\n", [], "did you mean 'training.learning_rate'"),
        (GOOD, ["training.learning_rate=-0.5"], "training.learning_rate = -0.5: Input should be greater than 0"),
        (GOOD, ["update.lora.r=0"], "update.lora.r = 0"),
        (GOOD, ["data.train=./missing.jsonl"], "data.train = './missing.jsonl': no such file or directory"),
        (GOOD, ["trainingx=1"], "did you mean 'training'"),
        ("model: [\n", [], "invalid YAML"),
    ],
)
def test_bad_config_exits_2_with_one_clear_message(tmp_path, yaml_text, overrides, expected):
    out = run_align("sft", "--config", _write(tmp_path, yaml_text), *overrides)
    assert out.returncode == 2, out.stderr
    assert expected in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ")


def test_missing_config_file(tmp_path):
    out = run_align("reward", "--config", str(tmp_path / "nope.yaml"))
    assert out.returncode == 2
    assert "config file not found" in out.stderr


def test_stage_without_config_says_how():
    out = run_align("ppo")
    assert out.returncode == 2
    assert "needs --config" in out.stderr


def test_unknown_option_is_a_usage_error():
    out = run_align("demo", "--sizee", "tiny")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr


def test_demo_rejects_unknown_size():
    out = run_align("demo", "--size", "huge")
    assert out.returncode == 2
    assert "--size must be 'demo' or 'tiny'" in out.stderr


def test_a_missing_model_run_dir_fails_before_any_run_dir_exists(tmp_path):
    """The reward and PPO stages name run dirs of earlier stages; a missing one is a clear exit 2,
    found before the stage writes anything (no half run dir that a retry would trip over)."""
    tiny = Path(__file__).parents[1] / "configs" / "tiny"
    out = run_align(
        "reward",
        "--config",
        str(tiny / "reward.yaml"),
        "model.name_or_path=runs/sft-tiny",
        "output.output_dir=rm",
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "'runs/sft-tiny': no such file or directory; run `align sft --config " in out.stderr
    assert "configs/tiny/sft.yaml` first" in out.stderr  # the config that writes runs/sft-tiny
    (tmp_path / "rm-done").mkdir()
    out = run_align(
        "ppo", "--config", str(tiny / "ppo.yaml"), "reward_model=rm-done", "output.output_dir=ppo", cwd=tmp_path
    )
    assert out.returncode == 2 and "'runs/sft-tiny': no such file or directory" in out.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["rm-done"]


@pytest.mark.parametrize(
    "stage, fixture", [("sft", "ultrafeedback_binarized"), ("sft", "sharegpt"), ("reward", "ultrafeedback_binarized")]
)
def test_public_dataset_shapes_train_from_the_shell(stage, fixture, repo_root, tiny_world, tmp_path):
    """The public datasets' shapes (fixtures in tests/fixtures) train as they come, no column mapping."""
    data = repo_root / "tests" / "fixtures" / f"{fixture}.jsonl"
    extra = (
        ["data.validation=null", "eval.enabled=false"]
        if stage == "sft"
        else [
            "simulate=null",
            "data.test=null",
            "eval.test_fraction=0.25",
            "data.validation_fraction=0",
            "eval.compare_untrained=false",
        ]
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "align",
            stage,
            "--config",
            str(repo_root / "configs" / "tiny" / f"{stage}.yaml"),
            f"data.train={data}",
            "training.max_steps=2",
            f"output.output_dir={tmp_path / 'run'}",
            "output.report_to=[none]",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "run" / "final").is_dir()
