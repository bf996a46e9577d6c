"""The pipeline on the user's model and data, no world: the template configs/my_data/ end to end on
a tiny model with data files written here (SFT records, prompts, preference pairs, a QA set),
each stage reading the file its role names; and the configurations it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from align.config import PipelineConfig, validate
from align.errors import AlignInputError

pytestmark = pytest.mark.heavy


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def my_data(folder: Path, world: Path) -> dict[str, str]:
    """Data in users' shapes, from the tiny world's texts (any text would do)."""
    sft = [json.loads(line) for line in (world / "sft" / "train.jsonl").read_text().splitlines()][:48]
    prompts = [{"prompt": row["instruction"]} for row in sft[:16]]
    pairs = [{"prompt": row["instruction"], "chosen": row["output"], "rejected": "I do not know."} for row in sft[:40]]
    qa = [{"question": row["instruction"], "answer": row["output"]} for row in sft[:8]]
    return {
        "sft": write_jsonl(
            folder / "sft.jsonl", [{"prompt": r["instruction"], "completion": r["output"]} for r in sft]
        ),
        "prompts": write_jsonl(folder / "prompts.jsonl", prompts),
        "preferences": write_jsonl(folder / "preferences.jsonl", pairs),
        "qa": write_jsonl(folder / "qa.jsonl", qa),
    }


def template(repo_root: Path, model: str, data: dict[str, str], out: Path) -> dict:
    """configs/my_data/pipeline.yaml with the tiny model, the test's data and seconds-long stages."""
    config = yaml.safe_load((repo_root / "configs/my_data/pipeline.yaml").read_text())
    config["data"] = {"sft": data["sft"], "prompts": data["prompts"], "preferences": data["preferences"],
                      "qa": {"test": data["qa"]}}  # fmt: skip
    short = {
        "sft": [f"model.name_or_path={model}", "training.max_steps=2", "data.max_length=64", "eval.max_examples=4"],
        "reward": ["training.max_steps=2", "update.mode=full", "data.max_length=64"],
        "grpo": ["schedule.steps=2", "rollout.batch_size=2", "rollout.max_new_tokens=8", "rollout.max_prompt_length=64",
                 "eval.max_prompts=4", "optim.policy_lr=1e-3"],
        "dpo": ["training.max_steps=2", "data.max_length=64", "eval.max_prompts=4", "eval.max_new_tokens=8"],
        "eval": [f"systems.base={model}", "generation.max_new_tokens=8"],
    }  # fmt: skip
    for step, overrides in short.items():
        config[step] = {"config": str(repo_root / config[step]["config"]), "overrides": overrides}
    config["output"] = {"output_dir": str(out)}
    return config


def test_the_template_runs_on_a_users_model_and_files(repo_root, tiny_world, tmp_path, monkeypatch):
    from stages import pipeline as pipeline_stage

    monkeypatch.chdir(tmp_path)
    data = my_data(tmp_path / "data", tiny_world)
    out = tmp_path / "run"
    config = validate(PipelineConfig, template(repo_root, str(tiny_world / "model"), data, out))
    assert config.world == "none"
    pipeline_stage.run(config)
    state = json.loads((out / "pipeline_state.json").read_text())
    assert list(state["steps"]) == ["sft", "reward", "grpo", "dpo", "eval"]  # no world, nothing to rank
    for step, key, wanted in (
        ("sft", "train", data["sft"]),
        ("reward", "train", data["preferences"]),
        ("dpo", "train", data["preferences"]),
        ("grpo", "train", data["prompts"]),
    ):
        saved = yaml.safe_load((out / step / "config.yaml").read_text())
        assert saved["data"][key] == wanted, step
    reward = yaml.safe_load((out / "reward" / "config.yaml").read_text())
    assert reward["model"]["name_or_path"] == str(out / "sft")  # the reward model starts from SFT
    figures = json.loads((out / "eval" / "eval.json").read_text())
    assert set(figures["parts"]["test"]) >= {"base", "sft", "grpo", "dpo"}
    assert (out / "report.md").is_file() and "demo" not in (out / "config.yaml").read_text()


def test_what_a_pipeline_without_a_world_refuses(repo_root, tiny_world, tmp_path):
    data = my_data(tmp_path / "data", tiny_world)
    config = template(repo_root, "m", data, tmp_path / "run")
    no_pairs = {**config, "data": {k: v for k, v in config["data"].items() if k != "preferences"}}
    simulated = {**no_pairs, "annotation": {"mode": "simulated"}}
    with pytest.raises(AlignInputError, match="simulated annotators rank by the demo world's gold rule"):
        validate(PipelineConfig, simulated)
    assert validate(PipelineConfig, no_pairs).annotation.mode == "human"  # people rank the candidates
    with pytest.raises(AlignInputError, match="has no demo world: drop world: demo"):
        validate(PipelineConfig, {**config, "world": "demo"})
    with pytest.raises(AlignInputError, match="rounds > 1 collect new rankings"):
        validate(PipelineConfig, {**config, "rounds": 2, "methods": ["grpo"]})


def test_without_pairs_people_rank_the_candidates_sampled_for_the_prompts(repo_root, tiny_world, tmp_path):
    """annotation.mode: human and no preferences: SFT, candidates for data.prompts, then the stop."""
    from stages import pipeline as pipeline_stage

    data = my_data(tmp_path / "data", tiny_world)
    config = template(repo_root, str(tiny_world / "model"), data, tmp_path / "run")
    config["data"].pop("preferences")
    config["candidates"] = {"max_prompts": 4, "k": 2, "max_new_tokens": 8}
    result = pipeline_stage.run(validate(PipelineConfig, config))
    assert result.metrics == {"waiting_for_rankings": 1.0}
    state = json.loads((tmp_path / "run" / "pipeline_state.json").read_text())
    assert list(state["steps"]) == ["sft", "candidates", "annotation"]
    assert state["steps"]["candidates"]["outputs"]["prompts"] == 4


def test_a_run_saved_by_an_older_align_resumes(tmp_path, repo_root):
    """A key added to the pipeline config since a run started (here `data` and `benchmarks`) is no
    change: the saved config takes today's defaults; a real change is still refused."""
    from align.config.loader import to_yaml
    from stages.pipeline import _check_same_config

    class Dir:
        path = tmp_path

        def file(self, name):
            return tmp_path / name

    config = validate(PipelineConfig, yaml.safe_load((repo_root / "configs/pipeline_demo.yaml").read_text()))
    saved = yaml.safe_load(to_yaml(config))
    for added in ("data", "benchmarks"):
        saved.pop(added)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    _check_same_config(Dir(), config, resume=True)
    changed = config.model_copy(update={"report_samples": config.report_samples + 1})
    with pytest.raises(AlignInputError, match="keys differ: report_samples"):
        _check_same_config(Dir(), changed, resume=True)
