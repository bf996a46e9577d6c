"""Environments a policy acts in during a rollout: the user's class (`env: file.py:ClassName`) or a
built-in one, checked before training, and one tool call run against an instance.

An environment class has
    reset(row) -> str | None     called once per rollout with the prompt's record; text it
                                 returns is added to the first turn (None: nothing)
    tool methods                 every other public method with type hints and a docstring
                                 (Google style "Args:"), shown to the model through the chat
                                 template's `tools` (transformers' get_json_schema)
    step(text) -> (obs, done)    optional: for environments that are not tool-based (a game, a
                                 user simulator), called with each model turn
    reward() -> float | None     optional: the environment's own reward, one more reward source
    close()                      optional: called after the rollout
One instance per rollout, created fresh. A tool that raises, gets arguments that do not fit or
takes longer than the timeout answers the model with the error text: failure is data, not a crash.
"""

from __future__ import annotations

import concurrent.futures
import inspect
from dataclasses import dataclass
from typing import Any

from align.errors import AlignInputError
from align.tools.calls import ToolCall
from align.user_code import load_named

LIFECYCLE = ("reset", "step", "reward", "close")


def tool_methods(cls: type) -> dict[str, Any]:
    """The class's tools: public methods that are not lifecycle methods (nor `__init__`)."""
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and name not in LIFECYCLE
    }


def check_environment(cls: Any, where: str) -> type:
    """The class, or exit 2 naming the file, the class and the method at fault."""
    from transformers.utils import get_json_schema

    if not inspect.isclass(cls):
        raise AlignInputError(f"{where}: is a {type(cls).__name__}, not a class")
    if not callable(getattr(cls, "reset", None)):
        raise AlignInputError(f"{where}: class {cls.__name__} has no reset(self, row) method")
    tools = tool_methods(cls)
    if not tools and not callable(getattr(cls, "step", None)):
        raise AlignInputError(
            f"{where}: class {cls.__name__} has neither tool methods nor step(self, text): nothing for the model to do"
        )
    for name, method in tools.items():
        try:
            get_json_schema(method)
        except Exception as exc:  # transformers' own message names the argument
            raise AlignInputError(
                f"{where}: tool {cls.__name__}.{name}: {exc}; every tool needs type hints on its arguments and a "
                "docstring with an Args: section (the model reads them)"
            ) from None
    return cls


def load_environment(spec: str) -> type:
    """`file.py:ClassName`, `module:ClassName` or a built-in name (`calculator`)."""
    if spec in BUILT_IN:
        return BUILT_IN[spec]
    where = f"env {spec!r}"
    return check_environment(load_named(spec, where, kind="class"), where)


def tool_schemas(env: Any) -> list[dict[str, Any]]:
    """What the chat template's `tools` gets: one JSON schema per tool method of the instance."""
    from transformers.utils import get_json_schema

    return [get_json_schema(getattr(env, name)) for name in tool_methods(type(env))]


@dataclass(frozen=True)
class ToolResult:
    text: str  # what the model reads as the tool's answer
    status: str  # ok | error | timeout | unknown


def run_tool(env: Any, call: ToolCall, timeout: float) -> ToolResult:
    """Run one call on `env` within `timeout` seconds; every failure becomes text for the model.
    A timed-out call's thread is left to finish on its own (the sandboxed tools run in a
    subprocess that their own limits kill)."""
    tools = tool_methods(type(env))
    if call.name not in tools:
        return ToolResult(f"Error: no tool named {call.name!r}; the tools are: {', '.join(sorted(tools))}", "unknown")
    method = getattr(env, call.name)
    try:
        inspect.signature(method).bind(**call.arguments)
    except TypeError as exc:
        return ToolResult(f"Error: {call.name} cannot take these arguments ({exc})", "error")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        result = pool.submit(method, **call.arguments).result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        return ToolResult(f"Error: {call.name} took longer than {timeout:g} s and was stopped", "timeout")
    except Exception as exc:
        return ToolResult(f"Error: {call.name} failed: {type(exc).__name__}: {exc}", "error")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return ToolResult(str(result), "ok")


class Calculator:
    """The built-in `calculator` environment: one tool, arithmetic on numbers."""

    def reset(self, row: dict) -> None:
        return None

    def calculate(self, expression: str) -> str:
        """Compute an arithmetic expression exactly.

        Args:
            expression: numbers with + - * / // % ** and parentheses, e.g. "(17 + 25) * 3"
        """
        from align.tools.calculator import calculate

        return calculate(expression)


class Python:
    """The built-in `python` environment: one tool that runs code in align.tools.sandbox (a
    subprocess with CPU, memory and time limits; read what it does not protect against there)."""

    def reset(self, row: dict) -> None:
        return None

    def run_python(self, code: str) -> str:
        """Run Python code in a fresh interpreter and return what it prints (use print()).

        Args:
            code: a complete Python program, e.g. "print(sum(range(10)))"
        """
        from align.tools.sandbox import run_python

        return run_python(code).text


class Retrieval:
    """The built-in `retrieval` environment: align's RAG index (`align rag index`) as a search
    tool. Options (tools.options): index (the index folder), k (passages per search), method
    (bm25, dense or hybrid, as the index holds)."""

    _loaded: dict[str, Any] = {}  # one index per folder, shared by every episode

    def __init__(self, index: str, k: int = 3, method: str = "bm25"):
        from align.retrieval.index import RetrievalIndex

        if index not in Retrieval._loaded:
            Retrieval._loaded[index] = RetrievalIndex.load(index)
        self.index, self.k, self.method = Retrieval._loaded[index], k, method

    def reset(self, row: dict) -> None:
        return None

    def search(self, query: str) -> str:
        """Search the document collection and return the best passages.

        Args:
            query: words to look for, e.g. "capital of the kingdom"
        """
        (hits,) = self.index.search([query], self.k, self.method)
        if not hits:
            return "No passage matches."
        return "\n".join(f"[{hit.rank}] {hit.chunk.text}" for hit in hits)


class Workbench(Calculator):
    """The built-in `workbench` environment: the calculator and a word sorter, the two skills the
    demo world's 2.7M-parameter model cannot learn by heart (sums and alphabetical order)."""

    def sort_words(self, words: str) -> str:
        """Sort comma-separated words alphabetically.

        Args:
            words: the words, separated by commas, e.g. "lamp, anchor, rope"
        """
        items = [w.strip() for w in words.split(",") if w.strip()]
        if not items:
            raise ValueError("give the words separated by commas")
        return ", ".join(sorted(items, key=str.lower))


BUILT_IN: dict[str, type] = {"calculator": Calculator, "python": Python, "retrieval": Retrieval, "workbench": Workbench}


def environment_factory(spec: str, options: dict[str, Any]):
    """A callable that makes one fresh environment per episode: the class of `spec` with the
    config's `options` as keyword arguments, checked now (exit 2 naming the option)."""
    import functools

    cls = load_environment(spec)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise AlignInputError(
            f"tools.options for env {spec!r}: {exc} (the class takes {inspect.signature(cls)})"
        ) from None
    try:
        cls(**options)  # a missing index or a bad option fails before training, not in the first rollout
    except AlignInputError:
        raise
    except Exception as exc:
        raise AlignInputError(f"env {spec!r} with tools.options {options}: {type(exc).__name__}: {exc}") from None
    return functools.partial(cls, **options)
