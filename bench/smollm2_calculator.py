"""SmolLM2-135M-Instruct with the built-in calculator on two-digit addition: does it call the tool
untaught, what a few tool transcripts (SFT) teach it, and what GRPO with the calculator adds.

    python bench/smollm2_calculator.py [--lessons 32] [--steps 10] [--seed 0] [--gsm8k N] [--out runs/bench-calculator]

The prompts of bench/smollm2_addition.py ("What is a + b?", a, b in 10..99; 256 for training,
64 held out). Untaught, the model is shown the tools as every rollout shows them (a system
message, since SmolLM2's template ignores `tools`). SFT: LoRA on `--lessons` transcripts of
training prompts (the same system message, the call, the calculator's answer, "a + b = c.").
GRPO: the calculator as the environment (up to 2 turns), the last_number rule on the final
answer as the reward, 4 prompts x 4 samples a step. Accuracy: the rule on greedy answers of the
64 held-out prompts (with the tools for the tool runs). `--gsm8k N`: also N held-out GSM8K
problems (the pulled set, seeded), 0-shot, up to 256 new tokens, without tools, with the
calculator untaught, after the calculator SFT and after GRPO on addition. Prints each figure,
time and tool calls.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from smollm2_addition import MODEL, greedy_accuracy, make_data  # noqa: E402


def lessons(train: Path, out: Path, count: int, model: str = MODEL, env: type | None = None) -> Path:
    """Tool transcripts of the first `count` training prompts, the tools shown as a rollout shows
    them to `model`: its template's own `tools` (a `tools` column) or a system message."""
    from align.config.common import ModelConfig
    from align.models import load_tokenizer, resolve_model_path
    from align.tools.environment import Calculator, tool_schemas
    from align.tools.episodes import prompt_messages

    env = env or Calculator
    tokenizer = load_tokenizer(ModelConfig(name_or_path=resolve_model_path(model)))  # a models: name or a folder
    schemas = tool_schemas(env())
    rows = [json.loads(line) for line in train.read_text().splitlines()][:count]
    path = out / "calculator_lessons.jsonl"
    with path.open("w") as handle:
        for row in rows:
            expression = row["completion"].split(" =")[0]
            shown, options = prompt_messages(tokenizer, [{"role": "user", "content": row["prompt"]}], schemas)
            call = {"type": "function", "function": {"name": "calculate", "arguments": {"expression": expression}}}
            messages = [
                *shown,
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "content": env().calculate(expression)},
                {"role": "assistant", "content": row["completion"]},
            ]
            handle.write(json.dumps({"messages": messages, **({"tools": schemas} if options else {})}) + "\n")
    return path


def sft(data: Path, out: Path, seed: int) -> tuple[Path, float]:
    import stages.sft
    from align.cli.common import build_config

    overrides = [
        f"model.name_or_path={MODEL}",
        f"data.train={data}",
        "data.validation=null",
        "data.max_length=512",
        f"training.seed={seed}",
        "training.num_epochs=2",
        "training.batch_size=4",
        "training.save_steps=null",
        "training.eval_steps=null",
        "eval.enabled=false",
        f"output.output_dir={out / 'sft-calculator'}",
        "output.overwrite=true",
        "output.report_to=[none]",
    ]
    start = time.perf_counter()
    result = stages.sft.run(build_config("sft", "configs/smollm2/sft.yaml", overrides))
    return result.run_dir, time.perf_counter() - start


def gsm8k_prompts(out: Path, count: int, seed: int) -> Path:
    """A seeded sample of GSM8K's test problems as {"prompt", "reference"} (the pulled set: `align data pull gsm8k`)."""
    import random

    from align.data.catalog import dataset_dir, lookup

    rows_file = dataset_dir(lookup("gsm8k")) / "rows.jsonl"
    if not rows_file.is_file():
        sys.exit("GSM8K is not cached: run `align data pull gsm8k` first")
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    chosen = random.Random(seed).sample(rows, count)
    path = out / "gsm8k_test.jsonl"
    path.write_text("".join(json.dumps({"prompt": r["question"], "reference": r["answer"]}) + "\n" for r in chosen))
    return path


LONG_ANSWERS = ["rollout.max_new_tokens=256", "tools.max_tokens=320", "schedule.accuracy_steps=null"]


def grpo(
    policy: str, files: dict[str, Path], out: Path, steps: int, seed: int, name: str, extra: list[str] = ()
) -> dict:
    import stages.ppo
    from align.cli.common import build_config

    overrides = [
        f"policy.name_or_path={policy}",
        "reward_model=null",
        "reward.sources=[{rule: last_number}]",
        "reward.missing_eos_penalty=null",
        f"data.train={files['train']}",
        f"data.test={files['test']}",
        "tools.env=calculator",
        "tools.max_turns=2",
        "tools.max_tokens=96",
        "rollout.batch_size=4",
        "rollout.samples_per_prompt=4",
        "rollout.max_new_tokens=48",
        "rollout.max_prompt_length=384",
        "kl.controller=fixed",
        "kl.kl_coef=0.05",
        "kl.apply_to=loss",
        "kl.estimator=k3",
        "ppo.minibatch_size=16",
        "optim.policy_lr=5e-4",
        f"schedule.steps={steps}",
        f"schedule.seed={seed}",
        "schedule.save_steps=null",
        f"schedule.accuracy_steps={max(1, steps // 2)}",
        "eval.max_prompts=64",
        "eval.gold=none",
        f"output.output_dir={out / name}",
        "output.overwrite=true",
        "output.report_to=[none]",
        *extra,
    ]
    start = time.perf_counter()
    result = stages.ppo.run(build_config("ppo", "configs/smollm2/ppo_grpo.yaml", overrides))
    figures = json.loads((result.run_dir / "eval.json").read_text())
    return {
        "before": figures["sft"]["accuracy_last_number"],
        "after": figures["grpo"]["accuracy_last_number"],
        "calls_before": figures["sft"].get("tool_calls"),
        "calls_after": figures["grpo"].get("tool_calls"),
        "seconds": round(time.perf_counter() - start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lessons", type=int, default=32, help="tool transcripts to fine-tune on")
    parser.add_argument("--steps", type=int, default=10, help="GRPO steps (4 prompts x 4 samples each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-calculator"))
    parser.add_argument(
        "--gsm8k", type=int, default=0, help="also: this many GSM8K problems, held out, with the calculator"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    files = make_data(args.out, args.seed)
    start = time.perf_counter()
    base = greedy_accuracy(MODEL, files["test"], 16)
    print(json.dumps({"base_no_tools": base, "seconds": round(time.perf_counter() - start)}), flush=True)
    untaught = grpo(MODEL, files, args.out, 1, args.seed, "untaught")  # its "before": the base model with the tools
    print(json.dumps({"untaught": untaught}), flush=True)
    taught, seconds = sft(lessons(files["train"], args.out, args.lessons), args.out, args.seed)
    print(json.dumps({"sft_seconds": round(seconds)}), flush=True)
    found = grpo(str(taught), files, args.out, args.steps, args.seed, "grpo-calculator")
    print(json.dumps({"grpo": found}), flush=True)
    if args.gsm8k:
        gsm = {**files, "test": gsm8k_prompts(args.out, args.gsm8k, args.seed)}
        plain = greedy_accuracy(MODEL, gsm["test"], 256)
        untaught_gsm = grpo(MODEL, gsm, args.out, 1, args.seed, "gsm8k-untaught", LONG_ANSWERS)
        # the same GRPO run on addition, its held-out figures now on GSM8K: before = the SFT model
        trained_gsm = grpo(str(taught), gsm, args.out, args.steps, args.seed, "gsm8k-grpo", LONG_ANSWERS)
        print(
            f"GSM8K, {args.gsm8k} problems (seed {args.seed}), 0-shot chat, last number, up to 256 new tokens: base "
            f"without tools {plain:.3f}; with the calculator untaught {untaught_gsm['before']:.3f} "
            f"({untaught_gsm['calls_before']} calls per answer); after the calculator SFT "
            f"{trained_gsm['before']:.3f} ({trained_gsm['calls_before']} calls); after GRPO on addition "
            f"{trained_gsm['after']:.3f} ({trained_gsm['calls_after']} calls), {trained_gsm['seconds']} s",
            flush=True,
        )
    print(
        f"two-digit addition, 64 held-out prompts, seed {args.seed}: base without tools {base:.3f}, with the "
        f"calculator untaught {untaught['before']:.3f} ({untaught['calls_before']} calls per answer); after SFT on "
        f"{args.lessons} calculator transcripts ({seconds:.0f} s), with the calculator {found['before']:.3f} "
        f"({found['calls_before']} calls per answer); after GRPO ({args.steps} steps, {found['seconds']} s) "
        f"{found['after']:.3f} ({found['calls_after']} calls per answer)"
    )


if __name__ == "__main__":
    main()
