"""SmolLM2-135M-Instruct on two-digit addition: GRPO with the last_number rule (no reward model)
against SFT on the same number of examples, held-out accuracy before and after.

    python bench/smollm2_addition.py [--steps 12] [--seed 0] [--out runs/bench-addition]

Prompts "What is a + b?" with a, b in 10..99, generated from the seed: 256 for training and 64
held out (pairs never trained on). Accuracy is the rule on greedy answers (the last number equals
a + b). GRPO: 4 prompts x 4 samples per step, LoRA r 16, KL 0.05 to the base model, the rule as
the only reward. SFT: LoRA on as many (prompt, "a + b = c.") examples as GRPO saw prompts.
Prints base, GRPO and SFT accuracy, each run's wall time, and GRPO's KL to the base model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = "models:smollm2-135m-instruct"


def make_data(out: Path, seed: int) -> dict[str, Path]:
    rng = random.Random(seed)
    pairs = rng.sample([(a, b) for a in range(10, 100) for b in range(10, 100)], 320)
    files = {}
    for name, chunk in (("train", pairs[:256]), ("test", pairs[256:])):
        path = out / f"addition_{name}.jsonl"
        path.write_text(
            "".join(
                json.dumps(
                    {"prompt": f"What is {a} + {b}?", "reference": str(a + b), "completion": f"{a} + {b} = {a + b}."}
                )
                + "\n"
                for a, b in chunk
            )
        )
        files[name] = path
    return files


def grpo(files: dict[str, Path], out: Path, steps: int, seed: int, args) -> dict:
    import stages.ppo
    from align.cli.common import build_config

    overrides = [
        f"policy.name_or_path={MODEL}",
        "reward_model=null",
        "reward.sources=[{rule: last_number}]",
        "reward.missing_eos_penalty=null",
        f"data.train={files['train']}",
        f"data.test={files['test']}",
        "rollout.batch_size=4",
        f"rollout.samples_per_prompt={args.samples}",
        f"rollout.max_new_tokens={args.max_new_tokens}",
        f"rollout.temperature={args.temperature}",
        "rollout.max_prompt_length=96",
        "kl.controller=fixed",
        "kl.kl_coef=0.05",
        f"kl.apply_to={args.kl_in}",  # loss: GRPO's form; in the reward, an all-wrong group's advantages are KL noise
        f"kl.estimator={'k3' if args.kl_in == 'loss' else 'k1'}",
        f"ppo.minibatch_size={4 * args.samples}",
        f"optim.policy_lr={args.lr}",
        f"schedule.steps={steps}",
        f"schedule.seed={seed}",
        "schedule.save_steps=null",
        f"schedule.accuracy_steps={max(1, steps // 5)}",
        "eval.max_prompts=64",
        "eval.gold=none",
        f"output.output_dir={out / 'grpo'}",
        "output.overwrite=true",
        "output.report_to=[none]",
    ]
    start = time.perf_counter()
    result = stages.ppo.run(build_config("ppo", "configs/smollm2/ppo_grpo.yaml", overrides))
    figures = json.loads((result.run_dir / "eval.json").read_text())
    return {
        "base": figures["sft"]["accuracy_last_number"],
        "grpo": figures["grpo"]["accuracy_last_number"],
        "kl": figures["grpo"]["kl_to_reference"],
        "seconds": time.perf_counter() - start,
        "curve": [
            (row["step"], row["heldout/last_number"])
            for row in map(json.loads, (result.run_dir / "metrics.jsonl").read_text().splitlines())
            if "heldout/last_number" in row
        ],
    }


def sft(files: dict[str, Path], out: Path, examples: int, seed: int) -> dict:
    import stages.sft
    from align.cli.common import build_config

    overrides = [
        f"model.name_or_path={MODEL}",
        f"data.train={files['train']}",
        "data.validation=null",
        f"data.max_samples={examples}",
        f"training.seed={seed}",
        "training.num_epochs=1",
        "training.batch_size=4",
        "training.save_steps=null",
        "training.eval_steps=null",
        "eval.enabled=false",  # accuracy is measured below with the rule, as for GRPO
        f"output.output_dir={out / 'sft'}",
        "output.overwrite=true",
        "output.report_to=[none]",
    ]
    start = time.perf_counter()
    result = stages.sft.run(build_config("sft", "configs/smollm2/sft.yaml", overrides))
    seconds = time.perf_counter() - start
    return {"sft_run": str(result.run_dir), "seconds": seconds}


def greedy_accuracy(model_path: str, test: Path, max_new_tokens: int) -> float:
    from align.config.common import ModelConfig
    from align.generation import chat_prompt_ids, decode_responses, generate, settings_for
    from align.models import load_causal_lm, load_tokenizer
    from align.rl.rules import last_number

    config = ModelConfig(name_or_path=model_path)
    model, tokenizer = load_causal_lm(config).eval(), load_tokenizer(config)
    rows = [json.loads(line) for line in test.read_text().splitlines()]
    settings = settings_for(tokenizer, model, max_new_tokens, do_sample=False)
    ids = [chat_prompt_ids(tokenizer, [{"role": "user", "content": r["prompt"]}]) for r in rows]
    answers = []
    for start in range(0, len(ids), 16):
        answers += decode_responses(tokenizer, generate(model, ids[start : start + 16], settings))
    return sum(last_number(a, r["reference"]) for a, r in zip(answers, rows)) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=4, help="GRPO samples per prompt (4 prompts per step)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=1.0, help="GRPO sampling temperature")
    parser.add_argument("--kl-in", choices=("loss", "reward"), default="loss", help="where the KL penalty goes")
    parser.add_argument("--lr", type=float, default=1.0e-3, help="GRPO policy learning rate (LoRA)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-addition"))
    parser.add_argument(
        "--data-only", action="store_true", help="Write the prompt files and stop (bench/rl_throughput.py reads them)."
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    files = make_data(args.out, args.seed)
    if args.data_only:
        print("\n".join(str(path) for path in files.values()))
        return
    found = grpo(files, args.out, args.steps, args.seed, args)
    print(json.dumps({"grpo": found}), flush=True)
    tuned = sft(files, args.out, examples=4 * args.steps, seed=args.seed)
    tuned["accuracy"] = greedy_accuracy(tuned["sft_run"], files["test"], args.max_new_tokens)
    print(json.dumps({"sft": tuned}), flush=True)
    print(
        f"two-digit addition, 64 held-out prompts, seed {args.seed}: base {found['base']:.3f} -> GRPO (rule, "
        f"{args.steps} steps x 4 prompts x {args.samples} samples, T {args.temperature}, {args.max_new_tokens} new "
        f"tokens, lr {args.lr}, KL in the {args.kl_in}, {found['seconds']:.0f} s, KL {found['kl']:.2f}) {found['grpo']:.3f}; "
        f"SFT on {4 * args.steps} examples ({tuned['seconds']:.0f} s) {tuned['accuracy']:.3f}; "
        f"GRPO curve {found['curve']}"
    )


if __name__ == "__main__":
    main()
