"""The ceiling: what the bare model does on this machine, in each precision it supports, and how
much of it align's own loops get.

    python bench/ceiling.py --model models:smollm2-135m-instruct [--batch-size 8] [--seq 128]
                            [--gen-batch 16] [--new-tokens 64] [--steps 4] [--sft-steps 6] [--profile]
    python bench/ceiling.py --dry-run        # the tiny world's model, a step or two of each (CI)

Prints, one table:
- the machine: whether oneDNN can use bf16 here (AVX-512 BF16 or AMX on a CPU; the GPU's own
  flag), and a 1024^3 matmul's GFLOP/s in each precision;
- the bare model (transformers alone): full fine-tuning forward + backward on batch x seq random
  tokens, and greedy `generate` of batch x new-tokens (forced to full length), tokens/s in fp32
  and under bf16 autocast where supported;
- align: `align sft` (update mode --mode, on the world's SFT data cut to --seq tokens, no
  evaluation) trained tokens/s (TRL's count of non-padding tokens over the trainer's runtime), and
  align.generation (the generation every stage uses for rollouts, candidates and evaluation)
  useful tokens/s (tokens before each sequence's stop), each as a fraction of the bare figure;
- with --profile, torch.profiler's top operators by self CPU time in one align SFT run.
The reward, DPO and GRPO update stages are not measured here yet. Runs on a GPU as it does on a
CPU (the device is the one align picks). The last line is the rows as JSON.
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
    """Whether bf16 runs natively here: the GPU's flag, or oneDNN's check of the CPU (AVX-512 BF16 / AMX)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


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


def align_generate(model, tokenizer, batch: int, new_tokens: int, steps: int) -> float:
    """align.generation.generate's useful tokens/s (each response up to its stop) on random prompts."""
    from align.generation import generate, settings_for

    prompts = torch.randint(0, model.config.vocab_size, (batch, 16)).tolist()
    settings = settings_for(tokenizer, model, new_tokens, do_sample=False)
    produced = []

    def run():
        produced.append(int(generate(model, prompts, settings).response_mask.sum()))

    seconds = timed(run, steps)
    return sum(produced[1:]) / len(produced[1:]) / seconds


def align_sft(model_dir: str, data: Path, args, out: Path) -> float:
    import stages.sft
    from align.config.sft import SFTConfig
    from align.rundir import read_metrics

    config = SFTConfig.model_validate(
        {
            "model": {"name_or_path": model_dir},
            "data": {"train": str(data), "max_length": args.seq},
            "update": {"mode": args.mode},
            "training": {"max_steps": args.sft_steps, "batch_size": args.batch_size, "logging_steps": 1},
            "eval": {"enabled": False},
            "output": {"output_dir": str(out), "report_to": ["none"]},
        }
    )
    result = stages.sft.run(config)
    tokens = max(r.get("num_tokens", 0) for r in read_metrics(result.run_dir / "metrics.jsonl"))
    return tokens / result.metrics["train_seconds"]


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
    parser.add_argument("--mode", default="lora", choices=["lora", "full"])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="tiny world, tiny shapes: the code path, no figures")
    args = parser.parse_args()
    if args.dry_run:
        args.size, args.batch_size, args.seq, args.gen_batch, args.new_tokens = "tiny", 2, 160, 2, 4
        args.steps, args.sft_steps = 1, 2

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
    bare = {r["what"].split()[1]: r["value"] for r in rows if r["precision"] == "fp32" and r["what"].startswith("bare")}
    with tempfile.TemporaryDirectory() as tmp:
        sft = align_sft(model_dir, world / "sft" / "train.jsonl", args, Path(tmp) / "sft")
        generated = align_generate(model, tokenizer, args.gen_batch, args.new_tokens, args.steps)
        rows.append(
            {
                "what": f"align sft ({args.mode}) {args.batch_size}x{args.seq}",
                "precision": "fp32",
                "value": sft,
                "of_bare": sft / bare["forward+backward"],
            }
        )
        rows.append(
            {
                "what": f"align generation {args.gen_batch}x{args.new_tokens}",
                "precision": "fp32",
                "value": generated,
                "of_bare": generated / bare["generate"],
            }
        )
        table = profile_sft(model_dir, world / "sft" / "train.jsonl", args, Path(tmp) / "prof") if args.profile else ""
    print(
        f"\nceiling on {device().type} ({torch.get_num_threads()} threads, bf16 native: {bf16_supported()}), "
        f"model {args.model or 'the world model'}, {time.strftime('%Y-%m-%d %H:%M')}; tokens/s unless said"
    )
    print(f"{'what':<40} {'precision':>9} {'value':>10} {'of bare fp32':>13}")
    for row in rows:
        share = f"{row['of_bare']:.2f}" if "of_bare" in row else ""
        print(f"{row['what']:<40} {row['precision']:>9} {row['value']:>10.1f} {share:>13}")
    if table:
        print("\ntop operators of one align sft run (self CPU time):\n" + table)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
