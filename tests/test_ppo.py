"""`align ppo` end to end on a mini world: the run dir contract, resume after a crash gives
the uninterrupted run's numbers, the KL penalty holds the policy back, and bad input fails
with one clear message."""

from __future__ import annotations

import json
import math

import ppo_world
import pytest
import torch

import stages.ppo as ppo_stage
from align.config.loader import validate
from align.config.ppo import PPOConfig
from align.errors import AlignInputError, TrainingDiverged
from align.rundir import read_metrics

NOISY = ("time", "time_generate", "time_score", "time_train")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return ppo_world.build(tmp_path_factory.mktemp("ppo_world"))


def config(world, out, **sections) -> PPOConfig:
    return validate(PPOConfig, ppo_world.config_dict(world, out, **sections))


class VowelScorer:
    """A reward with a strong, learnable signal (share of 'a'/'e' characters), on the real RM's model."""

    def __init__(self, real):
        self.model, self.tokenizer, self.meta, self.path = real.model, real.tokenizer, real.meta, real.path

    def score(self, prompts, responses):
        return torch.tensor([5.0 * sum(c in "ae" for c in r) / max(len(r), 1) for r in responses])


def test_run_writes_the_run_dir_contract(world, tmp_path):
    out = tmp_path / "run"
    result = ppo_stage.run(config(world, out))
    names = {p.name for p in out.iterdir()}
    assert {
        "config.yaml",
        "env.json",
        "metrics.jsonl",
        "checkpoints",
        "final",
        "eval.json",
        "report.md",
        "samples.jsonl",
    } <= names
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in (
        "rm_score",
        "rm_score_std",
        "kl",
        "kl_k1",
        "kl_coef",
        "policy_loss",
        "value_loss",
        "entropy",
        "clipfrac",
        "approx_kl",
        "explained_variance",
        "response_length",
        "no_eos_share",
        "time_generate",
        "time_score",
        "time_train",
    ):
        assert all(math.isfinite(r[key]) for r in rows), key
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # a fresh LoRA adapter (B = 0) is the reference itself
    figures = json.loads((out / "eval.json").read_text())
    assert figures["prompts"] == 8 and 0 <= figures["win_rate_rm"] <= 1
    assert {"rm_mean", "response_length"} <= set(figures["sft"]) and "kl_to_reference" in figures["ppo"]
    state = json.loads((out / "checkpoints" / "step-3" / "state.json").read_text())
    assert state["step"] == 3 and state["sampler"]["cursor"] == 24
    from align.config.common import ModelConfig
    from align.models import load_causal_lm

    final = load_causal_lm(ModelConfig(name_or_path=str(out)))  # run dir -> final/, a plain merged model
    assert final.config.vocab_size == 300 and result.artifacts["final"] == out / "final"
    assert "![reward.png](reward.png)" in (out / "report.md").read_text()


def crash_in_step_3_then_resume(world, tmp_path, monkeypatch, **sections) -> tuple[list[dict], list[dict]]:
    """(straight run's metrics, metrics of a run killed during step 3 and resumed)."""
    ppo_stage.run(config(world, tmp_path / "straight", **sections))
    real_step, calls = ppo_stage.ppo_step, []

    def crash_at_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash during step 3")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(ppo_stage, "ppo_step", crash_at_third)
    with pytest.raises(KeyboardInterrupt):
        ppo_stage.run(config(world, tmp_path / "crashed", **sections))
    monkeypatch.setattr(ppo_stage, "ppo_step", real_step)
    assert not (tmp_path / "crashed" / "checkpoints" / "step-3").exists()
    ppo_stage.run(config(world, tmp_path / "crashed", output={"resume": "auto"}, **sections))
    return read_metrics(tmp_path / "straight" / "metrics.jsonl"), read_metrics(tmp_path / "crashed" / "metrics.jsonl")


def assert_same_step_3(straight: list[dict], resumed: list[dict]) -> None:
    assert [r["step"] for r in resumed] == [1, 2, 3]
    for key, value in straight[2].items():
        if key not in NOISY:
            assert resumed[2][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_resume_after_crash_reproduces_the_uninterrupted_run(world, tmp_path, monkeypatch):
    assert_same_step_3(*crash_in_step_3_then_resume(world, tmp_path, monkeypatch, eval={"enabled": False}))


GRPO = {"advantage": {"estimator": "grpo"}, "rollout": {"batch_size": 2, "samples_per_prompt": 4}}


def test_grpo_builds_no_critic_and_resumes_exactly(world, tmp_path, monkeypatch):
    straight, resumed = crash_in_step_3_then_resume(world, tmp_path, monkeypatch, eval={"enabled": False}, **GRPO)
    assert not any("value_loss" in r or "explained_variance" in r for r in straight)
    assert all(math.isfinite(r["advantage_abs_mean"]) and r["policy_grad_norm"] >= 0 for r in straight)
    checkpoint = tmp_path / "straight" / "checkpoints" / "step-3"
    assert not (checkpoint / "critic.pt").exists() and "critic_optimizer" not in torch.load(checkpoint / "optim.pt")
    assert_same_step_3(straight, resumed)


def test_rloo_with_kl_in_the_loss(world, tmp_path):
    out = tmp_path / "rloo"
    ppo_stage.run(
        config(
            world,
            out,
            advantage={"estimator": "rloo"},
            rollout={"batch_size": 2, "samples_per_prompt": 4},
            kl={"apply_to": "loss", "kl_coef": 0.5, "controller": "fixed"},
            eval={"max_prompts": 4},
        )
    )
    rows = read_metrics(out / "metrics.jsonl")
    assert all("kl_loss" in r and r["non_score_reward"] == 0.0 for r in rows)  # the KL left the reward
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # sampled by a fresh adapter = the reference
    assert 0.0 <= rows[0]["kl_loss"] < 0.01 and rows[-1]["kl_loss"] > 0  # k3 >= 0, growing as the policy moves
    assert json.loads((out / "eval.json").read_text())["prompts"] == 4


def test_group_estimators_need_two_samples_per_prompt(world, tmp_path):
    with pytest.raises(AlignInputError, match="set rollout.samples_per_prompt to 2 or more"):
        config(world, tmp_path / "r", advantage={"estimator": "grpo"})


def test_kl_penalty_holds_the_policy_near_the_reference(world, tmp_path, monkeypatch):
    real = ppo_stage.load_scorer
    monkeypatch.setattr(ppo_stage, "load_scorer", lambda path: VowelScorer(real(path)))
    common = {
        "update": {"mode": "full"},
        "optim": {"policy_lr": 2e-2},
        "reward": {"missing_eos_penalty": None},
        "schedule": {"steps": 5, "save_steps": None},
        "eval": {"enabled": False},
    }
    kls = {}
    for coef in (0.0, 5.0):
        out = tmp_path / f"kl{coef}"
        ppo_stage.run(config(world, out, kl={"kl_coef": coef, "controller": "fixed"}, **common))
        kls[coef] = [r["kl"] for r in read_metrics(out / "metrics.jsonl")]
    late = {coef: sum(v[-2:]) / 2 for coef, v in kls.items()}
    assert late[0.0] > 2 * late[5.0] and late[0.0] > 1.0, kls


# -- bad input -----------------------------------------------------------------------------------
def test_sft_run_given_as_reward_model(world, tmp_path):
    with pytest.raises(AlignInputError, match="not a reward model"):
        ppo_stage.run(config(world, tmp_path / "r", reward_model=str(world["policy"])))


def test_context_too_small_for_prompt_plus_response(world, tmp_path):
    with pytest.raises(AlignInputError, match="exceeds the policy's context of 128"):
        ppo_stage.run(config(world, tmp_path / "r", rollout={"max_prompt_length": 100, "max_new_tokens": 40}))


def test_all_prompts_longer_than_the_limit(world, tmp_path):
    with pytest.raises(AlignInputError, match="no usable prompts"):
        ppo_stage.run(config(world, tmp_path / "r", rollout={"max_prompt_length": 4}))


def test_reward_model_returning_nan_stops_before_training(world, tmp_path, monkeypatch):
    from align.reward.scorer import RewardScorer

    monkeypatch.setattr(RewardScorer, "score", lambda self, p, r: torch.full((len(p),), float("nan")))
    with pytest.raises(TrainingDiverged, match="non-finite score"):
        ppo_stage.run(config(world, tmp_path / "r"))
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_a_reward_model_with_the_wrong_count_stops_like_a_function(world, tmp_path, monkeypatch):
    """One validator for every kind of source: the same bad output is the same error (exit 3)."""
    from align.errors import AlignRunError
    from align.reward.scorer import RewardScorer

    monkeypatch.setattr(RewardScorer, "score", lambda self, p, r: torch.zeros(1))
    with pytest.raises(AlignRunError, match="reward source 'rm' returned 1 values for 8 completions"):
        ppo_stage.run(config(world, tmp_path / "r"))
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_cli_exit_code_2_with_one_message(world, tmp_path, capsys):
    import yaml

    from align.cli import main

    path = tmp_path / "ppo.yaml"
    data = ppo_world.config_dict(world, tmp_path / "r")
    data["reward_model"] = str(world["policy"])
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SystemExit) as exit_info:
        main(["ppo", "--config", str(path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "not a reward model" in err and "Traceback" not in err


def test_diverged_run_exits_3_with_what_to_try(world, tmp_path, capsys, monkeypatch):
    """A NaN reward is a failed run, not bad input: its own exit code, one message, no traceback."""
    import yaml

    from align.cli import main
    from align.reward.scorer import RewardScorer

    monkeypatch.setattr(RewardScorer, "score", lambda self, p, r: torch.full((len(p),), float("nan")))
    path = tmp_path / "ppo.yaml"
    path.write_text(yaml.safe_dump(ppo_world.config_dict(world, tmp_path / "r")))
    with pytest.raises(SystemExit) as exit_info:
        main(["ppo", "--config", str(path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 3 and "Traceback" not in err
    assert "run failed: reward source 'rm' returned 8 non-finite score(s)" in err and "check the reward run" in err
    assert (tmp_path / "r" / "config.yaml").is_file()  # what was saved stays


@pytest.mark.parametrize(
    "failure",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: you tried to allocate 8589934592 bytes"
        ),
        MemoryError(),
    ],
    ids=["cuda", "cpu-allocator", "python"],
)
def test_out_of_memory_in_step_2_exits_3_with_what_to_lower_and_keeps_step_1(world, tmp_path, capsys, monkeypatch, failure):  # fmt: skip
    """Running out of memory is a failed run with advice (exit 3), not a bug (exit 1); the
    checkpoint written before it stays and --resume can go on from it. Other errors stay bugs."""
    import yaml

    from align.cli import main
    from align.reward.scorer import RewardScorer

    real, calls = RewardScorer.score, []

    def score(self, prompts, responses):
        calls.append(1)
        if len(calls) == 2:
            raise failure
        return real(self, prompts, responses)

    monkeypatch.setattr(RewardScorer, "score", score)
    path = tmp_path / "ppo.yaml"
    path.write_text(yaml.safe_dump(ppo_world.config_dict(world, tmp_path / "r", eval={"enabled": False})))
    with pytest.raises(SystemExit) as exit_info:
        main(["ppo", "--config", str(path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 3 and "Traceback" not in err
    assert "run failed: out of memory" in err and "training.batch_size" in err and "--resume" in err
    assert (tmp_path / "r" / "checkpoints" / "step-1" / "COMPLETE.json").is_file()
    monkeypatch.setattr(RewardScorer, "score", lambda self, p, r: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    path.write_text(yaml.safe_dump(ppo_world.config_dict(world, tmp_path / "r2", eval={"enabled": False})))
    with pytest.raises(RuntimeError, match="shape mismatch"):  # a bug: the traceback, exit 1
        main(["ppo", "--config", str(path)])


def test_health_warnings_for_negative_and_exploding_kl(capsys):
    cfg = validate(
        PPOConfig,
        {"policy": {"name_or_path": "p"}, "reward_model": "r", "data": {"train": "t"}, "kl": {"warn_above": 10.0}},
    )
    from align.ppo.health import HealthCheck

    check = HealthCheck(cfg, window=3)
    base = {"empty_share": 0.0}
    for step, kl in enumerate([-0.3, 0.4, -0.3], start=1):  # single negative batches: k1 noise, no warning
        check({**base, "kl": kl}, step)
    assert "negative" not in capsys.readouterr().err
    check({**base, "kl": -0.5}, 4)  # mean of the last 3 = -0.13
    err = capsys.readouterr().err
    assert "negative" in err and "temperature" in err
    check({**base, "kl": 50.0}, 5)
    assert "drifting far" in capsys.readouterr().err
    check({"empty_share": 0.9, "kl": 0.0}, 6)
    assert "empty" in capsys.readouterr().err


def test_health_names_truncation_and_an_entropy_collapse_before_it_is_complete(capsys):
    from align.ppo.health import HealthCheck

    def health(**reward):
        cfg = validate(
            PPOConfig,
            {"policy": {"name_or_path": "p"}, "reward_model": "r", "data": {"train": "t"}, "reward": reward},
        )
        return HealthCheck(cfg, window=2)

    check = health()
    check({"empty_share": 0.0, "kl": 0.0, "no_eos_share": 0.5}, 1)  # half: no warning
    assert "hit rollout.max_new_tokens" not in capsys.readouterr().err
    check({"empty_share": 0.0, "kl": 0.0, "no_eos_share": 0.75}, 2)
    err = capsys.readouterr().err
    assert "75% of the responses hit rollout.max_new_tokens" in err and "scored 1.0 lower" in err
    health(truncated="zero")({"empty_share": 0.0, "kl": 0.0, "no_eos_share": 1.0}, 1)
    assert "they are scored 0" in capsys.readouterr().err
    check = health()
    for step, entropy in enumerate([2.0, 2.2, 1.8, 1.2], start=1):  # recent mean 1.5 of a 2.1 baseline: fine
        check({"empty_share": 0.0, "kl": 0.0, "entropy": entropy}, step)
    assert "entropy" not in capsys.readouterr().err
    check({"empty_share": 0.0, "kl": 0.0, "entropy": 0.8}, 5)  # (1.2 + 0.8) / 2 = 1.0 < 2.1 / 2
    err = capsys.readouterr().err
    assert "entropy fell from 2.10 to 1.00" in err and "ppo.entropy_coef" in err
    check({"empty_share": 0.0, "kl": 0.0, "entropy": 0.1}, 6)  # said once
    assert "entropy" not in capsys.readouterr().err


def test_truncated_responses_penalised_or_zeroed_by_hand():
    from align.ppo.experience import transform_scores
    from align.rl.rewards import RunningMoments

    cfg = validate(PPOConfig, {"policy": {"name_or_path": "p"}, "reward_model": "r", "data": {"train": "t"}})
    raw, ended = torch.tensor([2.0, 2.0, -1.0]), torch.tensor([True, False, False])
    penalised = transform_scores(raw, ended, cfg.reward, RunningMoments())
    assert penalised.tolist() == [2.0, 1.0, -2.0]  # missing_eos_penalty 1.0
    zeroed = transform_scores(raw, ended, cfg.reward.model_copy(update={"truncated": "zero"}), RunningMoments())
    assert zeroed.tolist() == [2.0, 0.0, 0.0]


def test_a_reference_of_its_own_is_what_the_kl_is_measured_against(world, tmp_path):
    """reference: a separate frozen model (the pipeline's later rounds: KL to SFT while the policy
    continues round 1's): at step 1, before any update, the KL is 0 against the policy's own start
    and clearly above 0 against a different model; a reference with another vocabulary is refused."""
    from transformers import AutoModelForCausalLM

    other = AutoModelForCausalLM.from_pretrained(world["policy"])
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    other.save_pretrained(tmp_path / "other")
    quick = {"schedule": {"steps": 1, "save_steps": None}, "eval": {"enabled": False}}
    first_kl = {}
    for name, reference in (("own", None), ("other", str(tmp_path / "other"))):
        ppo_stage.run(config(world, tmp_path / f"run-{name}", reference=reference, **quick))
        first_kl[name] = read_metrics(tmp_path / f"run-{name}" / "metrics.jsonl")[0]["kl"]
    assert abs(first_kl["own"]) < 1e-4 and first_kl["other"] > 0.05, first_kl
    config_ = other.config
    config_.vocab_size += 5
    AutoModelForCausalLM.from_config(config_).save_pretrained(tmp_path / "wide")
    with pytest.raises(AlignInputError, match="must share a tokenizer"):
        ppo_stage.run(config(world, tmp_path / "wide-run", reference=str(tmp_path / "wide"), **quick))


ECHO_ENV = '''
class Echo:
    """A user simulator: asks once for more, then stops; rewards long final answers."""

    def reset(self, row):
        self.turns, self.last = 0, ""
        return None

    def step(self, text):
        self.turns, self.last = self.turns + 1, text
        return "Say more.", self.turns >= 2

    def reward(self):
        return float(len(self.last))
'''


def stop_each_turn_early(monkeypatch) -> None:
    """The untrained policy rarely stops within 8 tokens, so each turn's 4th token is made its
    stop id (the sampler's output, edited before the loop reads it): every episode then takes
    the environment's two turns."""
    import align.tools.episodes as episodes_module
    from align.generation import generate, response_mask_from_tokens

    def stopping_early(model, contexts, settings):
        out = generate(model, contexts, settings)
        out.response_ids[:, min(3, out.response_ids.shape[1] - 1)] = settings.eos_token_ids[0]
        out.response_mask, out.ended = response_mask_from_tokens(out.response_ids, settings.eos_token_ids)
        return out

    monkeypatch.setattr(episodes_module, "generate", stopping_early)


def env_sections(folder) -> dict:
    (folder / "envs.py").write_text(ECHO_ENV)
    return {
        "tools": {"env": f"{folder / 'envs.py'}:Echo", "max_turns": 3, "max_tokens": 40},
        "reward": {"sources": [{"environment": True}]},
        **GRPO,
    }


def test_grpo_with_an_environment_runs_episodes_and_logs_them(world, tmp_path, monkeypatch):
    stop_each_turn_early(monkeypatch)
    out = tmp_path / "env"
    schedule = {"steps": 2, "seed": 0, "save_steps": None, "sample_steps": 1, "accuracy_steps": 1}
    run = config(world, out, schedule=schedule, eval={"max_prompts": 4}, **env_sections(tmp_path))
    ppo_stage.run(run)
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all(r["tool/turns"] == 2 and r["tool/calls"] == 0 for r in rows)
    # held-out checks run episodes too (greedy), before and after training
    assert all(r["heldout/tool/turns"] == 2 and r["heldout/env"] > 0 for r in rows)
    figures = json.loads((out / "eval.json").read_text())
    assert figures["prompts"] == 4 and "rm_mean" not in figures["sft"]
    assert figures["sft"]["tool_turns"] == figures["grpo"]["tool_turns"] == 2 and figures["grpo"]["accuracy_env"] > 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8 and all([m["role"] for m in s["transcript"]] == ["assistant", "user", "assistant"] for s in samples)  # fmt: skip
    assert all(s["transcript"][1]["content"] == "Say more." for s in samples)
    # the environment's reward (the length of the last turn it saw) is the reward each sample got
    assert all(s["rm_score"] == len(s["transcript"][-1]["content"]) for s in samples)
    report = (out / "report.md").read_text()
    assert (
        "## Episodes (step 2)" in report and report.count("**user**:") == 3 + 3
    )  # the prompt and the simulator's turn
    assert (out / "tools.png").is_file() and "![tools.png](tools.png)" in report


def test_a_run_with_an_environment_resumes_exactly(world, tmp_path, monkeypatch):
    stop_each_turn_early(monkeypatch)
    straight, resumed = crash_in_step_3_then_resume(
        world, tmp_path, monkeypatch, eval={"enabled": False}, **env_sections(tmp_path)
    )
    assert straight[2]["tool/turns"] == 2
    assert_same_step_3(straight, resumed)


@pytest.mark.parametrize("estimator", ["gae", "rloo"])
def test_ppo_with_a_critic_and_rloo_run_episodes_too(estimator, world, tmp_path, monkeypatch):
    """The critic reads the tools' text like the policy (values on the model's tokens only)."""
    stop_each_turn_early(monkeypatch)
    sections = env_sections(tmp_path)
    sections["advantage"] = {"estimator": estimator}
    if estimator == "gae":
        sections["rollout"] = {"batch_size": 8, "samples_per_prompt": 1}
        sections["critic"] = {"init": "policy"}
    out = tmp_path / estimator
    schedule = {"steps": 2, "seed": 0, "save_steps": None}
    ppo_stage.run(config(world, out, schedule=schedule, eval={"enabled": False}, **sections))
    rows = read_metrics(out / "metrics.jsonl")
    assert all(r["tool/turns"] == 2 and math.isfinite(r["policy_loss"]) for r in rows)
    if estimator == "gae":
        assert all(math.isfinite(r["value_loss"]) and math.isfinite(r["explained_variance"]) for r in rows)


def test_an_environment_that_cannot_load_stops_before_the_run(world, tmp_path):
    (tmp_path / "bad.py").write_text("class NoReset:\n    def add(self, a: int) -> int:\n        return a\n")
    run = config(
        world, tmp_path / "out", tools={"env": f"{tmp_path / 'bad.py'}:NoReset"}, eval={"enabled": False}, **GRPO
    )
    with pytest.raises(AlignInputError, match="NoReset has no reset"):
        ppo_stage.run(run)
    assert not (tmp_path / "out").exists()


def test_skipping_the_pre_update_forward_trains_exactly_as_taking_it(world, tmp_path, monkeypatch):
    """GRPO with one pass, one minibatch and the KL in the loss: the run that takes the old
    log-probs from the update's own forward logs the same figures, step by step, as the run that
    computes them in a separate forward first; and the reward it is given rises."""
    import align.ppo.experience as experience

    real = ppo_stage.load_scorer
    monkeypatch.setattr(ppo_stage, "load_scorer", lambda path: VowelScorer(real(path)))
    sections = {
        "advantage": {"estimator": "grpo"},
        "rollout": {"batch_size": 4, "samples_per_prompt": 4},
        "ppo": {"epochs": 1, "minibatch_size": 16},
        "kl": {"apply_to": "loss", "kl_coef": 0.05},
        "update": {"mode": "full"},
        "optim": {"policy_lr": 3e-2},
        "reward": {"missing_eos_penalty": None},
        "schedule": {"steps": 12, "seed": 0, "save_steps": None},
        "eval": {"enabled": False},
    }
    ppo_stage.run(config(world, tmp_path / "skipped", **sections))
    monkeypatch.setattr(experience, "old_logprobs_needed", lambda config, rows: True)
    ppo_stage.run(config(world, tmp_path / "taken", **sections))
    skipped, taken = (read_metrics(tmp_path / name / "metrics.jsonl") for name in ("skipped", "taken"))
    for a, b in zip(skipped, taken):
        for key in ("rm_score", "kl", "kl_per_token", "policy_loss", "entropy", "response_length"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), (a["step"], key)
    scores = [r["rm_score"] for r in skipped]
    assert sum(scores[-2:]) / 2 > sum(scores[:2]) / 2 + 0.3, scores
