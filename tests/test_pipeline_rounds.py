"""`align pipeline` with rounds: 2 on the tiny world: round 2 samples from round 1's policy,
ranks its own budget of items chosen by the reward model's ensemble, retrains the reward model
on every ranking so far and continues round 1's policy; a kill (SIGKILL) in round 2's reward
step resumes without redoing round 1; bad round settings exit 2 before any work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

pytestmark = pytest.mark.heavy

ROUNDS = [
    "rounds=2",
    "methods=[ppo]",
    "candidates.budget=6",
    "candidates.select=uncertainty",
    "reward.overrides=[heads=2]",
    "eval.overrides=[]",
]
ROUND_1 = ["world", "sft", "candidates", "annotation", "reward", "ppo"]
ROUND_2 = ["candidates-r2", "annotation-r2", "reward-r2", "ppo-r2"]


def command(repo_root, out, *extra):
    config = str(repo_root / "configs/tiny/pipeline.yaml")
    return [sys.executable, "-m", "align", "pipeline", "--config", config, f"output.output_dir={out}", *ROUNDS, *extra]


def state_of(out) -> dict:
    path = out / "pipeline_state.json"
    return json.loads(path.read_text())["steps"] if path.is_file() else {}


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, repo_root):
    """Run, SIGKILL the process once round 2's reward model is training, note round 1's files, resume."""
    out = tmp_path_factory.mktemp("rounds") / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        command(repo_root, out), cwd=repo_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and process.poll() is None:
        if state_of(out).get("reward-r2", {}).get("status") == "running" and any((out / "reward-r2").glob("*")):
            break
        time.sleep(0.2)
    assert process.poll() is None, process.stderr.read()[-3000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = state_of(out)
    before = {name: (out / name / "final").stat().st_mtime_ns for name in ("sft", "reward", "ppo")}
    items_before = _items(out)
    resumed = subprocess.run(
        command(repo_root, out, "output.resume=auto"), cwd=repo_root, env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return out, killed, before, items_before, resumed.stdout


def _items(out) -> list[str]:
    from annotation_ui.store import Store

    return Store(f"sqlite:///{out / 'annotations.db'}").item_ids()


def test_round_two_follows_round_one_and_the_kill_redid_nothing_of_it(killed_and_resumed):
    out, killed, before, items_before, printed = killed_and_resumed
    assert [k for k, v in killed.items() if v["status"] == "done"] == ROUND_1 + ROUND_2[:2]
    assert killed["reward-r2"]["status"] == "running"
    # round 1's runs are untouched by the resume, round 2's candidates were not sampled again
    assert {name: (out / name / "final").stat().st_mtime_ns for name in ("sft", "reward", "ppo")} == before
    assert _items(out) == items_before
    for step in ROUND_1[1:] + ROUND_2[:2]:
        assert f"{step} · already done, skipped" in printed
    state = state_of(out)
    assert [k for k, v in state.items() if v["status"] == "done"] == ROUND_1 + ROUND_2 + ["eval"]


def test_each_round_ranks_its_budget_and_learns_from_every_ranking_so_far(killed_and_resumed):
    out = killed_and_resumed[0]
    state = state_of(out)
    items = _items(out)
    assert len(items) == 12 and sum(i.startswith("r2-") for i in items) == 6  # a budget of 6 per round
    assert state["candidates"]["outputs"]["select"] == "random"  # no reward model before round 1
    assert state["candidates-r2"]["outputs"]["select"] == "uncertainty"
    assert state["candidates-r2"]["outputs"]["pool"] >= 6
    first = (out / "annotation" / "rankings.jsonl").read_text().splitlines()
    second = (out / "annotation-r2" / "rankings.jsonl").read_text().splitlines()
    assert len(first) == 12 and len(second) == 24  # quota 2: round 2's file holds both rounds
    reward_r2 = yaml.safe_load((out / "reward-r2" / "config.yaml").read_text())
    assert reward_r2["data"]["train"] == str(out / "annotation-r2" / "rankings.jsonl") and reward_r2["heads"] == 2
    ppo_r2 = yaml.safe_load((out / "ppo-r2" / "config.yaml").read_text())
    assert ppo_r2["policy"]["name_or_path"] == str(out / "ppo") and ppo_r2["reward_model"] == str(out / "reward-r2")
    eval_config = yaml.safe_load((out / "eval" / "config.yaml").read_text())
    assert eval_config["systems"]["ppo"]["model"] == str(out / "ppo-r2")  # the final policy is evaluated
    report = (out / "report.md").read_text()
    section = report.split("## Rounds of the feedback loop", 1)[1].split("\n## ", 1)[0]
    assert "2 rounds of ppo (24 rankings in all" in report and "held-out gold" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 3 and rows[2].startswith("| 2 | 6 | uncertainty | 12 | 24 |")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["rounds=0"], "rounds"),
        (["rounds=2", "methods=[ppo, dpo]"], "rounds: 2 carries one policy from round to round"),
        (
            ["rounds=2", "methods=[ppo]", "candidates.budget=4", "reward.overrides=[heads=1]"],
            "candidates.select: uncertainty asks the reward model's heads",
        ),
        (["methods=[ppo]", "candidates.budget=500"], "budget 500 is larger than the pool of"),
    ],
)
def test_bad_round_settings_exit_2_before_any_work(tmp_path, repo_root, tiny_world, overrides, message):
    config = str(repo_root / "configs/tiny/pipeline.yaml")
    out = subprocess.run(
        [sys.executable, "-m", "align", "pipeline", "--config", config, f"output.output_dir={tmp_path / 'run'}"]
        + overrides,
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "sft").exists()
