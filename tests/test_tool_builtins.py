"""Built-in environments. The python tool's sandbox keeps the model's mistakes contained: an endless loop and a memory
hog are stopped within their limits, a sleeper by the wall clock, sockets refused, output cut;
each outcome is text the model reads, never an exception."""

from __future__ import annotations

import time

import pytest

from align.tools.calls import ToolCall
from align.tools.environment import Python, load_environment, run_tool
from align.tools.sandbox import Limits, run_python

FAST = Limits(cpu_seconds=1, memory_mb=256, wall_seconds=5.0, output_chars=200)


def test_prints_come_back():
    result = run_python("print(sum(range(10)))\nprint('done')", FAST)
    assert result.status == "ok" and result.text == "45\ndone\n"


def test_a_runaway_loop_is_stopped_by_its_cpu_limit():
    start = time.monotonic()
    result = run_python("while True:\n    pass", FAST)
    assert result.status == "cpu" and time.monotonic() - start < 4.0
    assert result.text.startswith("Error: the code used more CPU time than allowed")


def test_a_memory_hog_is_stopped_by_its_memory_limit():
    result = run_python("blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))", FAST)
    assert result.status == "memory" and "MemoryError" in result.text


def test_a_sleeper_is_stopped_by_the_wall_clock_with_its_children():
    start = time.monotonic()
    result = run_python("import time\nprint('before', flush=True)\ntime.sleep(60)", Limits(wall_seconds=1.0))
    assert result.status == "timeout" and time.monotonic() - start < 5.0 and "before" in result.text


def test_errors_sockets_and_long_output():
    error = run_python("print('x')\n1 / 0", FAST)
    assert error.status == "error" and "ZeroDivisionError: division by zero" in error.text and error.text.startswith("Error")  # fmt: skip
    network = run_python("import socket\nsocket.create_connection(('example.com', 80))", FAST)
    assert network.status == "error" and "network access is disabled" in network.text
    long = run_python("print('a' * 10000)", FAST)
    assert long.status == "ok" and len(long.text) == 200 and long.text.endswith("(output cut)")


def test_the_builtin_python_environment_answers_through_run_tool():
    assert load_environment("python") is Python
    env = Python()
    assert run_tool(env, ToolCall("run_python", {"code": "print(6 * 7)"}), timeout=15).text == "42\n"
    assert run_tool(env, ToolCall("run_python", {"code": "raise ValueError('no')"}), timeout=15).text.startswith(
        "Error"
    )


def test_the_retrieval_environment_searches_an_align_index(tmp_path):
    from align.config.rag import IndexConfig
    from align.errors import AlignInputError
    from align.retrieval.corpus import Document
    from align.retrieval.index import RetrievalIndex
    from align.tools.environment import environment_factory

    docs = [Document(f"d{i}", f"Town {i} is known for its market and river {i}.") for i in range(10)]
    docs.append(Document("vault", "The vault code of Quimbledor is 7431."))
    RetrievalIndex.build(docs, IndexConfig(chunk_size=32, chunk_overlap=4)).save(tmp_path / "idx")
    make = environment_factory("retrieval", {"index": str(tmp_path / "idx"), "k": 2})
    answer = run_tool(make(), ToolCall("search", {"query": "Quimbledor vault market"}), timeout=15).text
    assert answer.splitlines()[0] == "[1] The vault code of Quimbledor is 7431." and len(answer.splitlines()) == 2
    assert run_tool(make(), ToolCall("search", {"query": "zzz"}), timeout=15).text == "No passage matches."
    with pytest.raises(AlignInputError, match="unexpected keyword argument 'depth'"):
        environment_factory("retrieval", {"index": str(tmp_path / "idx"), "depth": 2})
    with pytest.raises(AlignInputError, match="not an align index"):
        environment_factory("retrieval", {"index": str(tmp_path / "nothing")})
