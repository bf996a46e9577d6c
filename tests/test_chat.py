"""`align chat`: the terminal loop on piped input, with two models answering side by side, the
streamed text equal to the answer, /system and /reset, and from the shell."""

from __future__ import annotations

import io
import os
import subprocess
import sys


def chatters(tiny_world):
    from align.chat import load_chatter

    model = str(tiny_world / "model")
    return [load_chatter(name, model, 10, 0.0, 1.0) for name in ("first", "second")]


def test_two_models_answer_each_message_and_keep_their_threads(tiny_world):
    from align.chat import chat_loop

    pair = chatters(tiny_world)
    streamed: list[str] = []
    answer = pair[0].reply("What is the trade of Folkrith?", stream=streamed.append)
    assert "".join(streamed) == answer and answer  # what streamed is the answer, whole
    pair[0].reset()
    out = io.StringIO()
    answered = chat_loop(pair, io.StringIO("Hello\n/system Answer in one word.\nWhere is Sunmere?\n/bogus\n"), out)
    printed = out.getvalue().splitlines()
    assert answered == 2
    assert [line.split("]")[0] for line in printed if line.startswith("[")] == ["[first", "[second"] * 2
    assert "(conversation reset; system prompt: Answer in one word.)" in printed
    assert any(line.startswith("(unknown command /bogus") for line in printed)
    for chatter in pair:  # after /system: its question and answer, under the system prompt
        assert [m["role"] for m in chatter.history] == ["user", "assistant"]
        assert chatter.messages("next")[0] == {"role": "system", "content": "Answer in one word."}


def test_chat_from_the_shell_with_piped_input(tiny_world, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "align",
            "chat",
            str(tiny_world / "model"),
            "--max-new-tokens",
            "6",
            "--temperature",
            "0",
        ],
        input="Hello\n/reset\nHi\n/quit\nnever read\n",
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert sum(line.startswith("[model] ") for line in lines) == 2 and "(conversation reset)" in lines
    bad = subprocess.run(
        [sys.executable, "-m", "align", "chat", str(tmp_path / "nothing")], input="", capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
