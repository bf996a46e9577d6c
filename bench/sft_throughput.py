"""Trained tokens per second: `align sft` vs a plain `trl.SFTTrainer` script, same model, data and settings.

    python bench/sft_throughput.py [--size demo|tiny] [--steps 30] [--batch-size 16] [--mode lora] [--repeats 2]
    python bench/sft_throughput.py --model models:smollm2-135m-instruct --steps 8 --batch-size 8 --max-length 128

--model trains another model (a hub id, folder, .gguf file or models:<name>) on the world's SFT
data instead of the world's own. Each system's peak resident memory is printed beside its speed.

Runs, in one process, interleaved for --repeats rounds (best of each kept, which also
discounts the first run's warm-up): the plain TRL script, our stage (no evaluation), and
our stage with packing. Tokens are the non-padding tokens the trainer
processed (TRL's own `num_tokens` counter, the same for both); time is the trainer's
train_runtime (model loading and data preparation excluded for both). Prints a table and
the ratios; ours / plain should be >= 1.0 (no wrapper overhead) and packing higher.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def plain_trl(world: Path, out: Path, args) -> dict:
    """What a user would write with TRL alone: conversational prompt/completion data, a LoRA config."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from align.data.io import read_records

    rows = read_records(world / "sft" / "train.jsonl")
    data = Dataset.from_list(
        [
            {
                "prompt": [
                    {
                        "role": "user",
                        "content": f"{r['instruction']}\n\n{r['input']}" if r["input"] else r["instruction"],
                    }
                ],
                "completion": [{"role": "assistant", "content": r["output"]}],
            }
            for r in rows
        ]
    )
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir)
    peft_config = None
    if args.mode == "lora":
        peft_config = LoraConfig(
            r=8,
            lora_alpha=16,
            lora_dropout=0.05,
            task_type="CAUSAL_LM",
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        )
    config = SFTConfig(
        output_dir=str(out),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=2e-4,
        lr_scheduler_type="cosine",
        warmup_steps=0.03,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        bf16=False,
        fp16=False,
        use_cpu=True,
        max_length=args.max_length,
        seed=42,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=data, processing_class=tokenizer, peft_config=peft_config
    )
    result = trainer.train()
    tokens = max(r.get("num_tokens", 0) for r in trainer.state.log_history)
    return {"tokens": tokens, "seconds": result.metrics["train_runtime"]}


def ours(world: Path, out: Path, args, packing: bool) -> dict:
    import stages.sft
    from align.config.sft import SFTConfig
    from align.rundir import read_metrics

    config = SFTConfig.model_validate(
        {
            "model": {"name_or_path": str(args.model_dir)},
            "data": {"train": str(world / "sft" / "train.jsonl"), "max_length": args.max_length},
            "update": {"mode": args.mode},
            "training": {
                "max_steps": args.steps,
                "batch_size": args.batch_size,
                "learning_rate": 2e-4,
                "logging_steps": 10,
            },
            "packing": packing,
            "eval": {"enabled": False},
            "output": {"output_dir": str(out), "report_to": ["none"]},
        }
    )
    result = stages.sft.run(config)
    records = read_metrics(result.run_dir / "metrics.jsonl")
    tokens = max(r.get("num_tokens", 0) for r in records)
    return {"tokens": tokens, "seconds": result.metrics["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="demo", choices=["demo", "tiny"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--mode", default="lora", choices=["lora", "full"])
    parser.add_argument("--repeats", type=int, default=2, help="Interleaved rounds; the best of each is kept.")
    parser.add_argument("--model", default=None, help="Model to train (default: the world's own).")
    args = parser.parse_args()

    from peak_memory import PeakRSS

    from align.demo import build_world
    from align.models import resolve_model_path

    world = build_world(size=args.size)
    if args.model and args.model.startswith("models:"):
        from align import catalog

        args.model = str(catalog.pull(args.model.split(":", 1)[1]))
    args.model_dir = resolve_model_path(args.model) if args.model else str(world / "model")
    runners = {
        "plain trl.SFTTrainer": lambda out: plain_trl(world, out, args),
        "align sft": lambda out: ours(world, out, args, packing=False),
        "align sft + packing": lambda out: ours(world, out, args, packing=True),
    }
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeats):  # interleaved, so drifting machine load hits every trainer alike
            for name, runner in runners.items():
                with PeakRSS() as peak:
                    row = runner(Path(tmp) / f"{name.replace(' ', '_')}-{round_}")
                row["peak_rss_mib"] = peak.mib
                if name not in rows or row["tokens"] / row["seconds"] > rows[name]["tokens"] / rows[name]["seconds"]:
                    rows[name] = row
    print(
        f"\nSFT throughput on the {args.size} world's data, model {args.model or 'the world model'}: {args.mode}, {args.steps} steps, batch {args.batch_size}, "
        f"max_length {args.max_length}, {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(f"{'trainer':<24} {'tokens':>9} {'seconds':>9} {'tokens/s':>10} {'peak RSS MiB':>13}")
    for name, row in rows.items():
        row["tps"] = row["tokens"] / row["seconds"]
        print(
            f"{name:<24} {row['tokens']:>9.0f} {row['seconds']:>9.2f} {row['tps']:>10.1f} {row['peak_rss_mib']:>13.0f}"
        )
    base = rows["plain trl.SFTTrainer"]["tps"]
    print(f"ratio align / plain:           {rows['align sft']['tps'] / base:.3f}")
    print(f"ratio align+packing / plain:   {rows['align sft + packing']['tps'] / base:.3f}")


if __name__ == "__main__":
    main()
