"""The documented environment (configs/tools/todo_env.py) and its GRPO config: the tools and the
reward by hand, and `align ppo --config configs/tools/ppo_grpo_todo.yaml` run for two steps with the
tiny world's model in SmolLM2's place; a template that cannot write tool answers stops first. The
demo world's tool lessons: SFT on them and GRPO with the workbench tools, on the tiny world."""

from __future__ import annotations

import json
import re
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
    assert TOOL_ROLE in chat_template  # the demo worlds' template writes tool answers
    without = [*overrides, f"policy.chat_template={json.dumps(chat_template.replace(TOOL_ROLE, ''))}"]
    with pytest.raises(AlignInputError, match="cannot write a tool's answer between turns"):
        ppo_stage.run(build_config("ppo", Path("configs/tools/ppo_grpo_todo.yaml"), without))
    ppo_stage.run(build_config("ppo", Path("configs/tools/ppo_grpo_todo.yaml"), [*overrides, "output.overwrite=true"]))
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all(r["tool/turns"] >= 1 and "reward/env" in r for r in rows)
    assert "tool_turns" in json.loads((tmp_path / "run" / "eval.json").read_text())["grpo"]


def test_the_tool_lessons_call_the_workbench_and_read_its_answers(tiny_world: Path):
    """Every lesson's call parses back (tagged form), runs on the workbench, and the tool message
    is what it returned; the reply holds the reference; the prompts are the world's sums and sorts,
    the held-out ones not trained on."""
    from align.data.conversation import check_messages
    from align.tools.calls import parse_turn
    from align.tools.environment import BUILT_IN

    rows = [json.loads(line) for line in (tiny_world / "tools" / "sft.jsonl").read_text().splitlines()]
    lessons = [r for r in rows if r["task"] in ("arithmetic", "sort_words")]
    plain = [json.loads(line) for line in (tiny_world / "sft" / "train.jsonl").read_text().splitlines()]
    plain_lessons = sum(r["task"] in ("arithmetic", "sort_words") for r in plain)
    assert len(rows) - len(lessons) == len(plain) - plain_lessons and len(lessons) > 2 * plain_lessons
    for row in lessons:
        user, call, tool, reply = check_messages(row["messages"], "messages", "lessons", 1)
        (parsed,) = parse_turn(call["content"], "tagged").calls
        assert [s["function"]["name"] for s in row["tools"]] == ["calculate", "sort_words"]
        assert tool == {"role": "tool", "content": run_tool(BUILT_IN["workbench"](), parsed, timeout=5).text}
        numbers = [int(n) for n in re.findall(r"\d+", user["content"])]
        words = user["content"].split("\n\n")[-1].split(", ")
        expected = str(sum(numbers)) if row["task"] == "arithmetic" else ", ".join(sorted(words))
        assert tool["content"] == expected and expected in reply["content"], user["content"]
    train, test = ([json.loads(line)["prompt"] for line in (tiny_world / "tools" / f"prompts_{s}.jsonl").read_text().splitlines()] for s in ("train", "test"))  # fmt: skip
    assert train and test

    def task_of(prompt: str) -> tuple:  # a sum's operands or a list's words, whatever the phrasing
        return tuple(re.findall(r"\d+", prompt)) or (prompt.split("\n\n")[-1],)

    assert not {task_of(p) for p in test} & {task_of(r["messages"][0]["content"]) for r in lessons}


def test_sft_on_the_tool_lessons_then_grpo_with_the_workbench(repo_root: Path, tiny_world: Path, tmp_path, monkeypatch):
    """The documented pair of configs, on the tiny world: SFT on the lessons, then GRPO whose
    rollouts call the tools, with held-out accuracy measured in greedy episodes."""
    import stages.sft as sft_stage

    monkeypatch.chdir(repo_root)
    sft_overrides = [
        "model.name_or_path=demo:tiny/model",
        "data.train=demo:tiny/tools/sft.jsonl",
        "training.num_epochs=1",
        "training.max_steps=3",
        f"output.output_dir={tmp_path / 'sft'}",
    ]
    sft_stage.run(build_config("sft", Path("configs/tools/sft_demo_tools.yaml"), sft_overrides))
    overrides = [
        f"policy.name_or_path={tmp_path / 'sft'}",
        "data.train=demo:tiny/tools/prompts_train.jsonl",
        "data.test=demo:tiny/tools/prompts_test.jsonl",
        "schedule.steps=2",
        "schedule.accuracy_steps=1",
        "eval.max_prompts=4",
        "rollout.batch_size=2",
        "ppo.minibatch_size=8",
        "rollout.max_new_tokens=16",
        "tools.max_tokens=40",
        f"output.output_dir={tmp_path / 'grpo'}",
    ]
    ppo_stage.run(build_config("ppo", Path("configs/tools/ppo_grpo_demo_tools.yaml"), overrides))
    rows = read_metrics(tmp_path / "grpo" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all(
        "reward/contains_answer" in r and "tool/turns" in r for r in rows
    )
    figures = json.loads((tmp_path / "grpo" / "eval.json").read_text())
    assert "tool_turns" in figures["grpo"] and "accuracy_contains_answer" in figures["grpo"]


def test_the_question_desk_reads_the_task_and_its_lessons_call_it(
    repo_root: Path, tiny_world: Path, tmp_path, monkeypatch
):
    """configs/tools/question_desk.py: the sum and the sorted list computed from the prompt the
    environment was reset with (by hand), a question without the numbers answered with the error;
    bench/demo_tools.py's lessons call the desk's tools with no arguments, the rest unchanged."""
    import sys

    monkeypatch.chdir(repo_root)
    env = environment_factory("configs/tools/question_desk.py:QuestionDesk", {})()
    env.reset({"prompt": "Add 15 and 11."})
    assert run_tool(env, ToolCall("add_the_numbers", {}), timeout=5).text == "26"
    env.reset({"prompt": "Sort these words alphabetically.\n\nrope, Anchor, lamp"})
    assert run_tool(env, ToolCall("sort_the_words", {}), timeout=5).text == "Anchor, lamp, rope"
    env.reset({"prompt": "What is the trade of Zorbin?"})
    failed = run_tool(env, ToolCall("add_the_numbers", {}), timeout=5)
    assert failed.status == "error" and "fewer than two numbers" in failed.text
    assert run_tool(env, ToolCall("add_the_numbers", {"expression": "1 + 2"}), timeout=5).status == "error"

    monkeypatch.syspath_prepend(str(repo_root / "bench"))
    sys.modules.pop("demo_tools", None)
    from demo_tools import desk_lessons

    original = [json.loads(line) for line in (tiny_world / "tools" / "sft.jsonl").read_text().splitlines()]
    rewritten = [json.loads(line) for line in desk_lessons(tmp_path, size="tiny").read_text().splitlines()]
    assert len(rewritten) == len(original)
    for before, after in zip(original, rewritten):
        calls = [c["function"] for m in after["messages"] for c in m.get("tool_calls") or []]
        if "tools" not in before:
            assert after == before
            continue
        assert calls and all(c["arguments"] == {} for c in calls)
        assert {c["name"] for c in calls} <= {"add_the_numbers", "sort_the_words"}
        assert [s["function"]["name"] for s in after["tools"]] == ["add_the_numbers", "sort_the_words"]
        tool_answers = [m["content"] for m in after["messages"] if m["role"] == "tool"]
        assert tool_answers == [m["content"] for m in before["messages"] if m["role"] == "tool"]
