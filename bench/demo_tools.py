"""The demo world's sums and sorts with tools that read the question themselves
(`configs/tools/question_desk.py`), against the world's own lessons where the model writes the
expression or the word list into the call.

    python bench/demo_tools.py [--seeds 0 1 2] [--steps 20] [--out runs/bench-demo-tools]

SFT: `configs/tools/sft_demo_tools.yaml` on the world's tool lessons (`demo:demo/tools/sft.jsonl`)
with every call rewritten to the desk's tools, which take no arguments (the tool's answer and the
reply that passes it on are unchanged). GRPO: `configs/tools/ppo_grpo_demo_tools.yaml` with the
desk as the environment, one run per seed from that SFT model. Held-out: the world's 69
arithmetic and sorting test prompts, greedy episodes with the tools; the answer rule
(contains_answer) on the last turn. Prints each figure, the tool calls per answer and the times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DESK = "configs/tools/question_desk.py:QuestionDesk"
RENAMED = {"calculate": "add_the_numbers", "sort_words": "sort_the_words"}


def desk_lessons(out: Path, size: str = "demo") -> Path:
    """The world's tool lessons with each call made to the desk's tool of the same job."""
    from align.demo import build_world
    from align.tools.environment import load_environment, tool_schemas

    schemas = tool_schemas(load_environment(DESK)())
    world = build_world(size=size, seed=0, progress=False)
    path = out / "desk_lessons.jsonl"
    with path.open("w") as handle:
        for line in (world / "tools" / "sft.jsonl").read_text().splitlines():
            row = json.loads(line)
            if "tools" in row:
                for message in row["messages"]:
                    for call in message.get("tool_calls") or []:
                        call["function"] = {"name": RENAMED[call["function"]["name"]], "arguments": {}}
                row["tools"] = schemas
            handle.write(json.dumps(row) + "\n")
    return path


def align_run(args: list[str], log: Path) -> float:
    """One `align` command from the repository root; its seconds (it must succeed)."""
    started = time.time()
    with log.open("w") as handle:
        done = subprocess.run([sys.executable, "-m", "align", *args], cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"align {' '.join(args)} exited {done.returncode}; see {log}")
    return time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-demo-tools")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    lessons = desk_lessons(out)
    sft_dir = out / "sft"
    sft_seconds = align_run(
        [
            "sft",
            "--config",
            "configs/tools/sft_demo_tools.yaml",
            f"data.train={lessons}",
            f"output.output_dir={sft_dir}",
        ],
        out / "sft.log",
    )
    print(f"SFT on {sum(1 for _ in lessons.open())} lessons (desk tools): {sft_seconds:.0f} s", flush=True)
    rows = []
    for seed in args.seeds:
        run = out / f"grpo-s{seed}"
        seconds = align_run(
            [
                "ppo",
                "--config",
                "configs/tools/ppo_grpo_demo_tools.yaml",
                f"policy.name_or_path={sft_dir}",
                f"tools.env={DESK}",
                f"schedule.seed={seed}",
                f"schedule.steps={args.steps}",
                f"output.output_dir={run}",
            ],
            out / f"grpo-s{seed}.log",
        )
        figures = json.loads((run / "eval.json").read_text())
        rows.append((seed, figures["sft"], figures["grpo"], seconds))
    print("\n| GRPO seed | held-out right, SFT -> GRPO | tool calls per answer, SFT -> GRPO | GRPO seconds |")
    print("| --- | --- | --- | --- |")
    for seed, sft, grpo, seconds in rows:
        print(
            f"| {seed} | {sft['accuracy_contains_answer']:.2f} -> {grpo['accuracy_contains_answer']:.2f} | "
            f"{sft['tool_calls']:.2f} -> {grpo['tool_calls']:.2f} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
