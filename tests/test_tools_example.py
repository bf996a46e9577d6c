"""The documented environment (configs/tools/todo_env.py) and its GRPO config: the tools and the
reward by hand, and `align ppo --config configs/tools/ppo_grpo_todo.yaml` run for two steps with the
tiny world's model in SmolLM2's place; a template that cannot write tool answers stops first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import stages.ppo as ppo_stage
from align.cli.common import build_config
from align.errors import AlignInputError
from align.rundir import read_metrics
from align.tools.calls import ToolCall
from align.tools.environment import environment_factory, run_tool, tool_schemas

TOOL_ROLE = "{% elif message['role'] == 'tool' %}{{ 'Tool: ' + message['content'] + '\\n' }}"


def test_the_todo_environment_by_hand(repo_root: Path, monkeypatch):
    monkeypatch.chdir(repo_root)
    make = environment_factory("configs/tools/todo_env.py:TodoList", {})
    env = make()
    row = json.loads((repo_root / "configs/tools/todo_prompts.jsonl").read_text().splitlines()[0])
    assert env.reset(row) == f"(Your list now holds: {', '.join(row['start'])}.)"
    assert [s["function"]["name"] for s in tool_schemas(env)] == ["add_item", "remove_item", "show_list"]
    assert env.reward() == 0.0
    for item in row["expected"][len(row["start"]) :]:
        run_tool(env, ToolCall("add_item", {"item": f" {item.upper()} "}), timeout=5)
    assert env.reward() == 1.0
    missing = run_tool(env, ToolCall("remove_item", {"item": "fly to the moon"}), timeout=5)
    assert missing.status == "error" and "'fly to the moon' is not on the list" in missing.text


def test_the_documented_config_runs(repo_root: Path, tiny_world: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(repo_root)
    chat_template = (tiny_world / "model" / "chat_template.jinja").read_text()
    overrides = [
        f"policy.name_or_path={tiny_world / 'model'}",
        "schedule.steps=2",
        "schedule.accuracy_steps=1",
        "eval.max_prompts=4",
        "rollout.max_new_tokens=16",
        "tools.max_tokens=48",
        "rollout.max_prompt_length=200",
        f"output.output_dir={tmp_path / 'run'}",
    ]
    with pytest.raises(AlignInputError, match="cannot write a tool's answer between turns"):
        ppo_stage.run(build_config("ppo", Path("configs/tools/ppo_grpo_todo.yaml"), overrides))
    with_tools = chat_template.replace("{% else %}", TOOL_ROLE + "{% else %}")
    overrides += [f"policy.chat_template={json.dumps(with_tools)}", "output.overwrite=true"]
    ppo_stage.run(build_config("ppo", Path("configs/tools/ppo_grpo_todo.yaml"), overrides))
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all(r["tool/turns"] >= 1 and "reward/env" in r for r in rows)
    assert "tool_turns" in json.loads((tmp_path / "run" / "eval.json").read_text())["grpo"]
