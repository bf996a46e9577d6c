"""align's GRPO with tools beside TRL's GRPOTrainer with `environment_factory`: the same model,
environment, prompts, reward and batch shape, in one run; episodes per second and held-out
accuracy (greedy episodes with the tool, evaluated the same way for both).

    python bench/trl_tools.py [--steps 6] [--lessons 32] [--seed 0] [--out runs/bench-trl-tools]

Model: SmolLM2-135M-Instruct with Qwen2.5's chat template (TRL parses tool calls only for chat
templates it knows by their exact text, and SmolLM2's is not one of them; Qwen2.5's renders the
tools itself and SmolLM2's vocabulary has its <|im_start|>/<|im_end|> tokens). Environment: a
calculator (`calculate(expression)`). Prompts and reward: bench/smollm2_addition.py's two-digit
additions and the last_number rule on the final answer. Untaught, SmolLM2 never calls the tool,
so both trainers start from the same model after align's SFT on `--lessons` calculator
transcripts (a `tools` column, which Qwen2.5's template renders). Both: 4 prompts x 4 samples a step, up
to 2 tool turns, 96 new tokens, LoRA r 16 on every linear layer, lr 5e-4, KL 0.05 in the loss
(TRL's beta), temperature 1.0, fp32 on CPU (TRL's trainer does not autocast; align runs with
precision fp32 to match).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from printing import print_rows  # noqa: E402
from smollm2_addition import MODEL, make_data  # noqa: E402
from smollm2_calculator import lessons as calculator_lessons  # noqa: E402

SAMPLES, PROMPTS, NEW_TOKENS, TURNS, LR, BETA = 4, 4, 96, 2, 5e-4, 0.05


class CalculatorEnv:
    """The environment both trainers get: one calculator per episode."""

    def reset(self, **row) -> None:
        return None

    def calculate(self, expression: str) -> str:
        """Compute an arithmetic expression exactly.

        Args:
            expression: numbers with + - * / and parentheses, e.g. "17 + 25"
        """
        from align.tools.calculator import calculate

        return calculate(expression)


class AlignCalculatorEnv(CalculatorEnv):
    def reset(self, row: dict) -> None:  # align passes the prompt row as one dict
        return None


def qwen_templated_model(out: Path) -> Path:
    """SmolLM2 saved with Qwen2.5's chat template (the only change)."""
    from transformers import AutoModelForCausalLM
    from trl.chat_template_utils import qwen2_5_chat_template

    from align.catalog import resolve_ref
    from align.config.common import ModelConfig
    from align.models import load_tokenizer, resolve_model_path

    folder = out / "smollm2-qwen-template"
    if not (folder / "config.json").is_file():
        source = resolve_model_path(resolve_ref(MODEL))
        tokenizer = load_tokenizer(ModelConfig(name_or_path=source))
        tokenizer.chat_template = qwen2_5_chat_template
        AutoModelForCausalLM.from_pretrained(source).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def taught_model(model_dir: Path, files: dict[str, Path], out: Path, lessons: int, seed: int) -> Path:
    """The model after align's SFT (full) on `lessons` calculator transcripts with a `tools` column,
    which Qwen2.5's template renders: a model that calls the tool, for both trainers to start from."""
    import stages.sft
    from align.cli.common import build_config

    final = out / "taught" / "final"
    if final.is_dir():
        return final
    data = calculator_lessons(files["train"], out, lessons, str(model_dir), CalculatorEnv)
    overrides = [
        f"model.name_or_path={model_dir}",
        "model.precision=fp32",
        f"data.train={data}",
        "data.validation=null",
        "data.max_length=512",
        "update.mode=full",
        "training.learning_rate=5e-5",
        f"training.seed={seed}",
        "training.num_epochs=3",
        "training.batch_size=4",
        "training.save_steps=null",
        "training.eval_steps=null",
        "eval.enabled=false",
        f"output.output_dir={out / 'taught'}",
        "output.report_to=[none]",
    ]
    stages.sft.run(build_config("sft", "configs/smollm2/sft.yaml", overrides))
    return final


def reward_right(completions, reference, **_) -> list[float]:
    """TRL's reward function: the last_number rule on each completion's final assistant turn."""
    from align.rl.rules import last_number

    finals = [next((m["content"] for m in reversed(c) if m["role"] == "assistant"), "") for c in completions]
    return [float(last_number(text or "", ref) or 0.0) for text, ref in zip(finals, reference)]


def run_trl(model_dir: Path, files: dict[str, Path], out: Path, steps: int, seed: int) -> Path:
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    data = load_dataset("json", data_files=str(files["train"]))["train"]
    data = data.map(lambda row: {"prompt": [{"role": "user", "content": row["prompt"]}]})
    args = GRPOConfig(
        output_dir=str(out / "trl"),
        per_device_train_batch_size=PROMPTS * SAMPLES,
        num_generations=SAMPLES,
        max_completion_length=NEW_TOKENS,
        max_tool_calling_iterations=TURNS - 1,
        max_steps=steps,
        learning_rate=LR,
        beta=BETA,
        temperature=1.0,
        seed=seed,
        use_cpu=True,
        bf16=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=reward_right,
        args=args,
        train_dataset=data,
        environment_factory=CalculatorEnv,
        peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"),
    )
    trainer.train()
    final = out / "trl" / "final"
    trainer.model.merge_and_unload().save_pretrained(final)
    trainer.processing_class.save_pretrained(final)
    return final


def run_align(model_dir: Path, files: dict[str, Path], out: Path, steps: int, seed: int) -> Path:
    import stages.ppo
    from align.cli.common import build_config

    env_file = Path(__file__).resolve()
    overrides = [
        f"policy.name_or_path={model_dir}",
        "policy.precision=fp32",
        "reward_model=null",
        "reward.sources=[{rule: last_number}]",
        "reward.missing_eos_penalty=null",
        f"data.train={files['train']}",
        f"data.test={files['test']}",
        f"tools.env={env_file}:AlignCalculatorEnv",
        f"tools.max_turns={TURNS}",
        f"tools.max_tokens={NEW_TOKENS}",
        f"rollout.batch_size={PROMPTS}",
        f"rollout.samples_per_prompt={SAMPLES}",
        f"rollout.max_new_tokens={NEW_TOKENS}",
        "rollout.max_prompt_length=384",
        "rollout.temperature=1.0",
        "update.lora.target_modules=all-linear",
        "kl.controller=fixed",
        f"kl.kl_coef={BETA}",
        "kl.apply_to=loss",
        "kl.estimator=k3",
        f"ppo.minibatch_size={PROMPTS * SAMPLES}",
        f"optim.policy_lr={LR}",
        f"schedule.steps={steps}",
        f"schedule.seed={seed}",
        "schedule.save_steps=null",
        "eval.enabled=false",
        "eval.gold=none",
        f"output.output_dir={out / 'align'}",
        "output.overwrite=true",
        "output.report_to=[none]",
    ]
    result = stages.ppo.run(build_config("ppo", "configs/smollm2/ppo_grpo.yaml", overrides))
    return result.run_dir


def heldout_accuracy(model_path: str, test: Path) -> tuple[float, float]:
    """(right answers, tool calls per answer) of greedy episodes on the held-out prompts."""
    from align.config.common import ModelConfig
    from align.generation import settings_for
    from align.models import load_causal_lm, load_tokenizer
    from align.rl.rules import last_number
    from align.tools.episodes import EpisodeSettings, run_episodes

    config = ModelConfig(name_or_path=model_path, precision="fp32")
    model, tokenizer = load_causal_lm(config).eval(), load_tokenizer(config)
    rows = [json.loads(line) for line in test.read_text().splitlines()]
    gen = settings_for(tokenizer, model, NEW_TOKENS, do_sample=False)
    settings = EpisodeSettings(max_turns=TURNS, max_tokens=NEW_TOKENS, call_format="tagged", timeout=5.0)
    right, calls = 0.0, 0
    for start in range(0, len(rows), 16):
        batch = rows[start : start + 16]
        conversations = [[{"role": "user", "content": r["prompt"]}] for r in batch]
        _, episodes = run_episodes(model, tokenizer, conversations, batch, AlignCalculatorEnv, gen, settings)
        right += sum(float(last_number(e.final_text, r["reference"]) or 0.0) for e, r in zip(episodes, batch))
        calls += sum(e.tool_status.total() for e in episodes)
    return right / len(rows), calls / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lessons", type=int, default=32, help="calculator transcripts the starting model is tuned on")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-trl-tools"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    files = make_data(args.out, args.seed)
    loaded = qwen_templated_model(args.out)
    rows = []
    for name, path in (
        ("none: SmolLM2, Qwen2.5 template", loaded),
        ("none: after SFT on calculator transcripts", None),
    ):
        path = path or taught_model(loaded, files, args.out, args.lessons, args.seed)
        right, calls = heldout_accuracy(str(path), files["test"])
        rows.append({"trainer": name, "right": round(right, 3), "calls_per_answer": round(calls, 2)})
        print(json.dumps(rows[-1]), flush=True)
    model_dir = path  # both trainers start from the taught model
    for name, run in (("align GRPO", run_align), ("TRL GRPOTrainer", run_trl)):
        start = time.perf_counter()
        try:
            trained = run(model_dir, files, args.out, args.steps, args.seed)
        except Exception as exc:  # say what stopped it, then measure the other
            rows.append({"trainer": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            continue
        seconds = time.perf_counter() - start
        path = trained / "final" if (trained / "final").is_dir() else trained
        right, calls = heldout_accuracy(str(path), files["test"])
        episodes = args.steps * PROMPTS * SAMPLES
        rows.append({"trainer": name, "steps": args.steps, "seconds": round(seconds), "episodes_per_s": round(episodes / seconds, 3),
                     "right": round(right, 3), "calls_per_answer": round(calls, 2)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    print_rows(rows)


if __name__ == "__main__":
    main()
