"""Environments: a user's class loaded from a file and checked before training (exit 2 naming
the file, class and method), its tools' schemas for the chat template, and every way a tool call
can fail answered as text for the model."""

from __future__ import annotations

import textwrap

import pytest

from align.errors import AlignInputError
from align.tools.calls import ToolCall
from align.tools.environment import load_environment, run_tool, tool_schemas

SORTER = '''
import time


class Sorter:
    """Sorts numbers; the reward is 1 when the model's last answer is the sorted list."""

    def reset(self, row):
        self.items, self.answer = row["items"], None
        return f"The numbers: {self.items}"

    def sort(self, numbers: list[int], descending: bool = False) -> str:
        """Sort a list of integers.

        Args:
            numbers: the integers to sort
            descending: largest first
        """
        return str(sorted(numbers, reverse=descending))

    def crash(self, why: str) -> str:
        """Always fails.

        Args:
            why: the reason
        """
        raise RuntimeError(why)

    def slow(self, seconds: float) -> str:
        """Sleeps.

        Args:
            seconds: how long
        """
        time.sleep(seconds)
        return "woke up"
'''


@pytest.fixture
def sorter(tmp_path):
    path = tmp_path / "my_env.py"
    path.write_text(SORTER)
    return load_environment(f"{path}:Sorter")


def test_a_user_environment_loads_and_its_tools_have_schemas(sorter):
    env = sorter()
    assert env.reset({"items": [3, 1, 2]}) == "The numbers: [3, 1, 2]"
    schemas = {s["function"]["name"]: s["function"] for s in tool_schemas(env)}
    assert set(schemas) == {"sort", "crash", "slow"}  # reset and the other lifecycle methods are not tools
    sort = schemas["sort"]
    assert sort["description"] == "Sort a list of integers."
    assert sort["parameters"]["required"] == ["numbers"]
    assert sort["parameters"]["properties"]["numbers"] == {"type": "array", "items": {"type": "integer"}, "description": "the integers to sort"}  # fmt: skip


def test_every_failure_of_a_call_is_text_for_the_model(sorter):
    env = sorter()
    assert run_tool(env, ToolCall("sort", {"numbers": [3, 1, 2]}), timeout=5).text == "[1, 2, 3]"
    wrong = run_tool(env, ToolCall("sort", {"items": [3]}), timeout=5)
    assert wrong.status == "error" and wrong.text.startswith("Error: sort cannot take these arguments")
    raised = run_tool(env, ToolCall("crash", {"why": "boom"}), timeout=5)
    assert (raised.status, raised.text) == ("error", "Error: crash failed: RuntimeError: boom")
    slow = run_tool(env, ToolCall("slow", {"seconds": 2}), timeout=0.2)
    assert (slow.status, slow.text) == ("timeout", "Error: slow took longer than 0.2 s and was stopped")
    unknown = run_tool(env, ToolCall("search", {}), timeout=5)
    assert unknown.status == "unknown" and "the tools are: crash, slow, sort" in unknown.text


def test_the_built_in_calculator():
    env = load_environment("calculator")()
    assert run_tool(env, ToolCall("calculate", {"expression": "(17 + 25) * 3"}), timeout=5).text == "126"
    refused = run_tool(env, ToolCall("calculate", {"expression": "__import__('os')"}), timeout=5)
    assert refused.status == "error" and "only numbers" in refused.text


@pytest.mark.parametrize(
    "source, words",
    [
        (
            "class E:\n    def go(self, x: int) -> int:\n        '''Go.\n\n        Args:\n            x: x\n        '''\n",
            r"has no reset\(self, row\)",
        ),  # fmt: skip
        ("class E:\n    def reset(self, row):\n        pass\n", "neither tool methods nor step"),
        (
            "class E:\n    def reset(self, row):\n        pass\n    def go(self, x):\n        '''Go.'''\n",
            "tool E.go: Argument x is missing a type hint",
        ),  # fmt: skip
        ("E = 3\n", "is a int, not a class"),
        ("raise ImportError('no numpy here')\n", "importing .* failed: ImportError: no numpy here"),
    ],
)
def test_a_class_that_cannot_serve_is_refused_naming_file_class_and_method(tmp_path, source, words):
    path = tmp_path / "bad_env.py"
    path.write_text(textwrap.dedent(source))
    with pytest.raises(AlignInputError, match=words):
        load_environment(f"{path}:E")
    with pytest.raises(AlignInputError, match="no file"):
        load_environment(f"{tmp_path / 'missing.py'}:E")
