"""The ceiling: what the bare model does on this machine, in each precision it supports, and how
much of it align's own loops get.

    python bench/ceiling.py --model models:smollm2-135m-instruct [--batch-size 8] [--seq 128]
                            [--gen-batch 16] [--new-tokens 64] [--steps 4] [--sft-steps 6]
                            [--grpo-steps 3] [--profile]
    python bench/ceiling.py --dry-run        # the tiny world's model, a step or two of each (CI)

Prints, one table:
- the machine: whether it does bf16 natively (AVX-512 BF16, AMX or ARM BF16 on a CPU; the GPU's
  own flag), and a 1024^3 matmul's GFLOP/s in each precision;
- the bare model (transformers alone): full fine-tuning forward + backward on batch x seq random
  tokens, and greedy `generate` of batch x new-tokens (forced to full length), tokens/s in fp32
  and under bf16 autocast where the hardware has it;
- align, in the same precisions (`model.precision`), each as a fraction of the bare figure at
  that precision: `align sft` (update mode --mode, on the world's SFT data cut to --seq tokens,
  no evaluation) trained tokens/s (non-padding tokens over the trainer's runtime);
  align.generation (what rollouts, candidates and every evaluation use) useful tokens/s (tokens
  up to each stop) on the bare model and on a LoRA policy (frozen base, as in `align ppo`); and a
  short GRPO run shaped like configs/smollm2/ppo_grpo.yaml (a fresh LoRA on the model, a length
  rule as the reward, 4 prompts x 4 samples of up to 24 tokens, one update of the 16): rollout
  tokens/s and the seconds of one step's log-prob passes (policy, reference) and update;
- with --profile, torch.profiler's top operators by self CPU time in one align SFT run.
Reward-model and DPO training run on the same TRL trainer loop and forward passes as SFT and are
not timed separately here. Runs on a GPU as it does on a CPU (the device is the one align
picks). The last line is the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


def bf16_supported() -> bool:
    """Whether bf16 runs natively here (align's own check: the GPU's flag, the CPU's bf16 flags)."""
    from align.device import detect_device

    return detect_device().bf16


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def precision(name: str):
    """A context that runs the block in `name`: fp32 as is, bf16 under autocast (weights stay fp32)."""
    return nullcontext() if name == "fp32" else torch.autocast(device().type, dtype=torch.bfloat16)


def timed(fn, repeats: int) -> float:
    """Seconds per call, after one warm-up call."""
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def matmul_gflops(name: str, n: int = 1024) -> float:
    a, b = torch.randn(n, n, device=device()), torch.randn(n, n, device=device())
    dtype = torch.float32 if name == "fp32" else torch.bfloat16
    a, b = a.to(dtype), b.to(dtype)
    return 2 * n**3 / timed(lambda: a @ b, 10) / 1e9


def bare_train(model, name: str, batch: int, seq: int, steps: int) -> float:
    """Full fine-tuning forward + backward tokens/s on random tokens (no optimizer step)."""
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), device=device())
    model.train()

    def step():
        with precision(name):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    return batch * seq / timed(step, steps)


def bare_generate(model, name: str, batch: int, new_tokens: int, steps: int, pad_id: int) -> float:
    """Greedy generate tokens/s, every sequence forced to `new_tokens`."""
    ids = torch.randint(0, model.config.vocab_size, (batch, 16), device=device())
    model.eval()

    def run():
        with torch.no_grad(), precision(name):
            model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                pad_token_id=pad_id,
            )

    return batch * new_tokens / timed(run, steps)


def align_generate(model, tokenizer, name: str, batch: int, new_tokens: int, steps: int) -> float:
    """align.generation.generate's useful tokens/s (each response up to its stop) on random prompts,
    in precision `name` as a stage runs it (align.precision)."""
    from align.generation import generate, settings_for
    from align.precision import precision_scope

    prompts = torch.randint(0, model.config.vocab_size, (batch, 16)).tolist()
    settings = settings_for(tokenizer, model, new_tokens, do_sample=False)
    produced = []

    def run():
        with precision_scope(name):
            produced.append(int(generate(model, prompts, settings).response_mask.sum()))

    seconds = timed(run, steps)
    return sum(produced[1:]) / len(produced[1:]) / seconds


def lora_policy(model):
    """The model as `align ppo` samples from it: a fresh LoRA adapter (all linear layers), base frozen."""
    import copy

    from peft import LoraConfig, get_peft_model

    return get_peft_model(copy.deepcopy(model), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))


def align_sft(model_dir: str, data: Path, args, out: Path, name: str = "fp32") -> float:
    import stages.sft
    from align.config.sft import SFTConfig
    from align.rundir import read_metrics

    config = SFTConfig.model_validate(
        {
            "model": {"name_or_path": model_dir, "precision": name},
            "data": {"train": str(data), "max_length": args.seq},
            "update": {"mode": args.mode, "lora": {"dropout": 0.0}},
            "training": {"max_steps": args.sft_steps, "batch_size": args.batch_size, "logging_steps": 1},
            "eval": {"enabled": False},
            "output": {"output_dir": str(out), "report_to": ["none"]},
        }
    )
    result = stages.sft.run(config)
    tokens = max(r.get("num_tokens", 0) for r in read_metrics(result.run_dir / "metrics.jsonl"))
    return tokens / result.metrics["train_seconds"]


def align_grpo(model_dir: str, world: Path, args, out: Path, name: str) -> tuple[float, float]:
    """(rollout tokens/s, seconds per update) of a short `align ppo` GRPO run, the first step left out."""
    import stages.ppo
    from align.config.ppo import PPOConfig
    from align.rundir import read_metrics

    config = PPOConfig.model_validate(
        {
            "policy": {"name_or_path": model_dir, "precision": name},
            "data": {"train": str(world / "preference" / "train.jsonl")},
            "update": {"mode": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.0}},
            "rollout": {"batch_size": 4, "samples_per_prompt": 4, "max_new_tokens": 24},
            "ppo": {"epochs": 1, "minibatch_size": 16},
            "reward": {"sources": [{"rule": "length", "target_words": 12}]},
            "advantage": {"estimator": "grpo"},
            "schedule": {"steps": args.grpo_steps + 1},
            "eval": {"enabled": False},
            "output": {"output_dir": str(out), "report_to": ["none"]},
        }
    )
    rows = [r for r in read_metrics(stages.ppo.run(config).run_dir / "metrics.jsonl") if "time_generate" in r][1:]
    responses = config.rollout.batch_size * config.rollout.samples_per_prompt
    tokens = sum(r["response_length"] * responses for r in rows)
    return tokens / sum(r["time_generate"] for r in rows), sum(r["time_train"] for r in rows) / len(rows)


def profile_sft(model_dir: str, data: Path, args, out: Path) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        align_sft(model_dir, data, args, out)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="hub id, folder, .gguf, models:<name> (default: the world's)")
    parser.add_argument("--size", default="demo", choices=["demo", "tiny"], help="the world whose SFT data is used")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--gen-batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4, help="timed repeats of each bare measurement")
    parser.add_argument("--sft-steps", type=int, default=6)
    parser.add_argument("--grpo-steps", type=int, default=3, help="timed GRPO steps (one more runs first, untimed)")
    parser.add_argument("--mode", default="lora", choices=["lora", "full"])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="tiny world, tiny shapes: the code path, no figures")
    args = parser.parse_args()
    if args.dry_run:
        args.size, args.batch_size, args.seq, args.gen_batch, args.new_tokens = "tiny", 2, 160, 2, 4
        args.steps, args.sft_steps, args.grpo_steps = 1, 2, 1

    from align.config.common import ModelConfig
    from align.demo import build_world
    from align.models import load_causal_lm, load_tokenizer, resolve_model_path

    world = build_world(size=args.size, progress=False)
    model_dir = resolve_model_path(args.model) if args.model else str(world / "model")
    model_config = ModelConfig(name_or_path=model_dir)
    model, tokenizer = load_causal_lm(model_config).to(device()), load_tokenizer(model_config)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    names = ["fp32", "bf16"] if bf16_supported() else ["fp32"]
    rows = []
    for name in names:
        rows.append({"what": "matmul 1024^3 (GFLOP/s)", "precision": name, "value": matmul_gflops(name)})
    for name in names:
        train = bare_train(model, name, args.batch_size, args.seq, args.steps)
        gen = bare_generate(model, name, args.gen_batch, args.new_tokens, args.steps, pad_id)
        rows.append({"what": f"bare forward+backward {args.batch_size}x{args.seq}", "precision": name, "value": train})
        rows.append({"what": f"bare generate {args.gen_batch}x{args.new_tokens}", "precision": name, "value": gen})
    bare = {(r["what"].split()[1], r["precision"]): r["value"] for r in rows if r["what"].startswith("bare")}
    policy = lora_policy(model)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            sft = align_sft(model_dir, world / "sft" / "train.jsonl", args, Path(tmp) / f"sft-{name}", name)
            generated = align_generate(model, tokenizer, name, args.gen_batch, args.new_tokens, args.steps)
            from_lora = align_generate(policy, tokenizer, name, args.gen_batch, args.new_tokens, args.steps)
            rollout, update = align_grpo(model_dir, world, args, Path(tmp) / f"grpo-{name}", name)
            train_ceiling, gen_ceiling = bare[("forward+backward", name)], bare[("generate", name)]
            shape = f"{args.gen_batch}x{args.new_tokens}"
            rows += [
                {
                    "stage": "sft",
                    "what": f"align sft ({args.mode}) {args.batch_size}x{args.seq}",
                    "value": sft,
                    "of_bare": sft / train_ceiling,
                },
                {
                    "stage": "generation",
                    "what": f"align generation {shape}",
                    "value": generated,
                    "of_bare": generated / gen_ceiling,
                },
                {
                    "stage": "generation_lora",
                    "what": f"align generation, LoRA policy {shape}",
                    "value": from_lora,
                    "of_bare": from_lora / gen_ceiling,
                },
                {
                    "stage": "grpo_rollout",
                    "what": "align grpo rollout 16x24",
                    "value": rollout,
                    "of_bare": rollout / gen_ceiling,
                },
                {"stage": "grpo_update", "what": "align grpo update (s/step)", "value": update},
            ]
            for row in rows[-5:]:
                row["precision"] = name
        table = profile_sft(model_dir, world / "sft" / "train.jsonl", args, Path(tmp) / "prof") if args.profile else ""
    print(
        f"\nceiling on {device().type} ({torch.get_num_threads()} threads, bf16 native: {bf16_supported()}), "
        f"model {args.model or 'the world model'}, {time.strftime('%Y-%m-%d %H:%M')}; tokens/s unless said"
    )
    print(f"{'what':<40} {'precision':>9} {'value':>10} {'of bare (same precision)':>25}")
    for row in rows:
        share = f"{row['of_bare']:.2f}" if "of_bare" in row else ""
        print(f"{row['what']:<40} {row['precision']:>9} {row['value']:>10.1f} {share:>25}")
    if table:
        print("\ntop operators of one align sft run (self CPU time):\n" + table)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
