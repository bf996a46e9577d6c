"""Config system: YAML + overrides -> typed objects; every bad value is one clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from align.config import (
    STAGE_CONFIGS,
    SFTConfig,
    apply_overrides,
    check_input_paths,
    load_config,
    read_yaml,
    to_yaml,
    validate,
)
from align.errors import AlignInputError

MINIMAL = {"model": {"name_or_path": "gpt2"}, "data": {"train": "org/dataset"}}


def test_defaults_are_filled_and_typed():
    config = validate(SFTConfig, MINIMAL)
    assert config.training.learning_rate == pytest.approx(2e-4)
    assert config.update.mode == "lora"
    assert config.update.lora.r == 8


def test_unknown_key_names_location_and_closest_key():
    data = apply_overrides(MINIMAL, ["training.learnin_rate=0.1"])
    with pytest.raises(AlignInputError) as info:
        validate(SFTConfig, data, "sft.yaml")
    message = str(info.value)
    assert "sft.yaml" in message
    assert "'training.learnin_rate'" in message
    assert "did you mean 'training.learning_rate'" in message


def test_unknown_top_level_key_suggests_sibling():
    with pytest.raises(AlignInputError, match="did you mean 'update'"):
        validate(SFTConfig, {**MINIMAL, "updates": {}})


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("training.learning_rate=-1", "training.learning_rate = -1: Input should be greater than 0"),
        ("update.lora.r=0", "update.lora.r = 0"),
        ("training.batch_size=abc", "training.batch_size = 'abc'"),
        ("update.mode=quantum", "update.mode = 'quantum'"),
        ("deepspeed=missing.json", "DeepSpeed config file not found: missing.json"),
    ],
)
def test_bad_values_give_one_clear_message(override, fragment):
    with pytest.raises(AlignInputError) as info:
        validate(SFTConfig, apply_overrides(MINIMAL, [override]), "x.yaml")
    assert fragment in str(info.value)
    assert "Traceback" not in str(info.value)


def test_missing_required_key():
    with pytest.raises(AlignInputError, match="missing required key 'model'"):
        validate(SFTConfig, {"data": {"train": "x/y"}})


def test_overrides_parse_yaml_values_and_create_sections():
    data = apply_overrides({}, ["a.b=3", "a.c=true", "d=[1, 2]", "e.f=1.5e-4", "g=text"])
    assert data == {"a": {"b": 3, "c": True}, "d": [1, 2], "e": {"f": 1.5e-4}, "g": "text"}
    config = validate(SFTConfig, apply_overrides(MINIMAL, ["training.learning_rate=1.5e-4"]))
    assert config.training.learning_rate == pytest.approx(1.5e-4)


def test_overrides_do_not_mutate_input():
    original = {"a": {"b": 1}}
    apply_overrides(original, ["a.b=2"])
    assert original == {"a": {"b": 1}}


@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1"])
def test_malformed_override(bad):
    with pytest.raises(AlignInputError, match="must look like key.sub=value"):
        apply_overrides({}, [bad])


def test_override_into_a_scalar_is_refused():
    with pytest.raises(AlignInputError, match="'deepspeed' is a value, not a section"):
        apply_overrides({"deepspeed": "x.json"}, ["deepspeed.stage=2"])


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name_or_path: x\n  dtype: [unclosed\n")
    with pytest.raises(AlignInputError, match=r"bad.yaml:\d+:\d+: invalid YAML"):
        read_yaml(bad)


def test_missing_input_paths_are_reported(tmp_path):
    config = validate(
        SFTConfig, {"model": {"name_or_path": "runs/sft/final"}, "data": {"train": str(tmp_path / "no.jsonl")}}
    )
    with pytest.raises(AlignInputError) as info:
        check_input_paths(config, "cfg.yaml")
    assert "model.name_or_path = 'runs/sft/final': no such file or directory" in str(info.value)
    assert "data.train" in str(info.value)


def test_hub_names_and_demo_refs_pass_the_path_check():
    check_input_paths(
        validate(SFTConfig, {"model": {"name_or_path": "org/model"}, "data": {"train": "demo:tiny/sft/train.jsonl"}})
    )


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = validate(SFTConfig, MINIMAL)
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(config))
    assert load_config(SFTConfig, path) == config


def _stage_of(path: Path) -> str:
    stem = path.stem if path.parent.name == "tiny" else path.stem.split("_")[0]
    return stem


def all_configs(root: Path) -> list[Path]:
    """Stage configs; configs/cluster/ holds launcher files (accelerate, SLURM), not stage configs."""
    return sorted(p for p in (root / "configs").rglob("*.yaml") if "cluster" not in p.parts)


def test_every_yaml_under_configs_validates(repo_root):
    configs = all_configs(repo_root)
    assert configs, "configs/ holds no YAML"
    for path in configs:
        stage = _stage_of(path)
        assert stage in STAGE_CONFIGS, f"{path}: file name must start with a stage name ({', '.join(STAGE_CONFIGS)})"
        load_config(STAGE_CONFIGS[stage], path)


def test_every_yaml_opens_with_the_command_that_runs_it(repo_root):
    for path in all_configs(repo_root):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# align "), f"{path}: first line should be '# align <stage> --config {path.name} ...'"


def test_a_database_url_is_not_taken_for_a_missing_file(tmp_path):
    from align.config.loader import check_input_paths
    from align.config.reward import RewardConfig

    config = RewardConfig.model_validate(
        {"model": {"name_or_path": "m"}, "data": {"train": f"sqlite:///{tmp_path / 'annotations.db'}"}}
    )
    check_input_paths(config, "reward.yaml")  # the URL is read (and checked) by the preference reader
    with pytest.raises(AlignInputError, match="no such file"):
        check_input_paths(
            config.model_copy(update={"data": config.data.model_copy(update={"train": "./x.jsonl"})}), "r"
        )
