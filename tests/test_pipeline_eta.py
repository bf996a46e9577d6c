"""The pipeline's ETA against recorded runs: within a factor 1.5 of the time really left, at
the start of every stage after the first."""

from __future__ import annotations

import pytest

from align.config import PipelineConfig
from align.pipeline.progress import eta_seconds
from align.pipeline.steps import steps_for

SPEC = {"config": "configs/tiny/sft.yaml"}  # never read: only the methods matter here

# Stage seconds of real runs of the demo pipeline, with the world seed (0: the base model ships
# with the package; the fresh-clone run of issue #18 pre-trained it, as any other seed now does)
RECORDED = {
    # issue #18's fresh clone on a slower 2-core machine (one method); its world build was 2x ours
    "fresh clone, slower machine, base model pre-trained": (
        1,
        ["ppo"],
        {"world": 779, "sft": 68, "candidates": 77, "annotation": 11, "reward": 127, "ppo": 63, "eval": 20},
    ),
    # four methods, world cached, other work sharing the cores at times (reward and ppo 2x)
    "cached world, loaded machine": (
        0,
        ["ppo", "grpo", "rloo", "dpo"],
        {
            "world": 0,
            "sft": 56,
            "candidates": 60,
            "annotation": 7,
            "reward": 215,
            "ppo": 95,
            "grpo": 33,
            "rloo": 37,
            "dpo": 86,
            "eval": 30,
        },
    ),
    # a fresh clone with the shipped base model (2026-12-01, README's first command, idle cores)
    "fresh clone, shipped base model": (
        0,
        ["ppo", "grpo", "rloo", "dpo"],
        {
            "world": 3.1,
            "sft": 62.9,
            "candidates": 74.3,
            "annotation": 5.2,
            "reward": 59.4,
            "ppo": 58.6,
            "grpo": 42.8,
            "rloo": 42.5,
            "dpo": 71.8,
            "eval": 36.3,
        },
    ),
    # the loaded run's pipeline again, on idle cores
    "cached world, idle": (
        0,
        ["ppo", "grpo", "rloo", "dpo"],
        {
            "world": 0,
            "sft": 55,
            "candidates": 59,
            "annotation": 9,
            "reward": 107,
            "ppo": 48,
            "grpo": 38,
            "rloo": 35,
            "dpo": 70,
            "eval": 27,
        },
    ),
}


# what each run's ETA may be off by: 1.5 on a steady machine; the loaded run's reward and PPO took
# twice their usual time while other work started, which no estimate from earlier stages can see
# (measured worst: 1.53x, at the start of the reward stage)
BOUND = {"cached world, loaded machine": 1.6}


@pytest.mark.parametrize("name", list(RECORDED))
def test_eta_is_within_1_5x_from_the_second_stage_on(name):
    seed, methods, seconds = RECORDED[name]
    config = PipelineConfig.model_validate(
        {"seed": seed, "sft": SPEC, "reward": SPEC, "eval": SPEC, "methods": methods, **{m: SPEC for m in methods}}
    )
    bound = BOUND.get(name, 1.5)
    steps = steps_for(config)
    typical = {s.name: s.share for s in steps}
    names = [s.name for s in steps]
    assert names == list(seconds)
    for i in range(1, len(names)):  # the announcement of stage i + 1
        done = {n: seconds[n] for n in names[:i]}
        truth = sum(seconds[n] for n in names[i:])
        eta = eta_seconds(typical, done, names[i:])
        assert truth / bound <= eta <= truth * bound, (names[i], round(eta), truth)


def test_eta_of_a_smollm2_run_with_the_quick_benchmarks_once_sft_is_measured():
    """configs/smollm2/pipeline.yaml with benchmarks=quick (2026-12-07, 2 cores; the eval step
    includes 44 min of benchmarks): within 1.6x of the time left from the announcement of the
    candidates step on (before SFT is measured the ETA knows the demo world's times only)."""
    seconds = {"world": 0, "sft": 159, "candidates": 68, "annotation": 0, "reward": 167, "grpo": 127, "dpo": 301,
               "eval": 2745}  # fmt: skip
    config = PipelineConfig.model_validate(
        {
            "sft": SPEC,
            "reward": SPEC,
            "eval": SPEC,
            "methods": ["grpo", "dpo"],
            "grpo": SPEC,
            "dpo": SPEC,
            "benchmarks": "quick",
        }  # fmt: skip
    )
    steps = steps_for(config)
    typical, names = {s.name: s.share for s in steps}, [s.name for s in steps]
    assert names == list(seconds)
    for i in range(2, len(names)):
        done = {n: seconds[n] for n in names[:i]}
        truth = sum(seconds[n] for n in names[i:])
        eta = eta_seconds(typical, done, names[i:])
        assert truth / 1.6 <= eta <= truth * 1.6, (names[i], round(eta), truth)


def test_eta_scales_with_what_was_measured():
    typical = {"world": 100.0, "a": 10.0, "b": 20.0}
    assert eta_seconds(typical, {}, ["a", "b"]) == 30.0  # nothing measured: the typical times
    assert eta_seconds(typical, {"world": 0.0}, ["a", "b"]) == 30.0  # a cached world measures nothing
    assert eta_seconds(typical, {"world": 400.0}, ["a", "b"]) == pytest.approx(60.0)  # sqrt(4) x 30
    assert eta_seconds(typical, {"world": 400.0, "a": 30.0}, ["b"]) == pytest.approx(60.0)  # stages: 3x


def test_training_seed_reaches_every_training_stage(tmp_path):
    """pipeline training_seed sets sft/reward/dpo training.seed and each online method's schedule.seed."""
    from align.config import load_config
    from align.pipeline.steps import Context, stage_config

    def seeds(overrides: list[str]) -> dict[str, int]:
        config = load_config(PipelineConfig, "configs/tiny/pipeline.yaml", overrides)
        out = {}
        for step in steps_for(config):
            if step.is_stage and step.name != "eval":
                stage = stage_config(step.name, Context(config, tmp_path), None, step.stage)
                out[step.name] = stage.schedule.seed if hasattr(stage, "schedule") else stage.training.seed
        return out

    assert set(seeds([]).values()) != {7}
    assert seeds(["training_seed=7"]) == {"sft": 7, "reward": 7, "ppo": 7, "grpo": 7, "rloo": 7, "dpo": 7}


def test_pipeline_precision_reaches_every_stage(tmp_path):
    """pipeline precision sets model.precision (sft, reward, dpo), policy.precision (online methods)
    and eval's own precision; unset, each stage keeps its YAML's."""
    from align.config import load_config
    from align.pipeline.steps import Context, stage_config
    from align.precision import precision_request

    def precisions(overrides: list[str]) -> dict[str, str]:
        config = load_config(PipelineConfig, "configs/tiny/pipeline.yaml", overrides)
        return {
            step.name: precision_request(stage_config(step.name, Context(config, tmp_path), None, step.stage))[0]
            for step in steps_for(config)
            if step.is_stage
        }

    assert set(precisions([]).values()) == {"auto"}
    everywhere = precisions(["precision=bf16"])
    assert set(everywhere) >= {"sft", "reward", "ppo", "dpo", "eval"} and set(everywhere.values()) == {"bf16"}
