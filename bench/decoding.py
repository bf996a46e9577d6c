"""Decoding speed: align's own loop (finished rows dropped from the batch) against
`transformers`' `generate` (every row decodes until the longest stops), the same model, prompts,
batches and precision, in one run.

    python bench/decoding.py --model models:smollm2 [--workload ifeval|rollout|both]
                             [--prompts 32] [--batch-size 16] [--max-new-tokens 512]
                             [--precision auto|fp32|bf16] [--seed 0]
    python bench/decoding.py --dry-run          # the tiny world's model (CI: the code path only)

Workloads:
- ifeval: IFEval prompts (`align data pull ifeval`; a seeded sample) in the chat template, greedy,
  up to --max-new-tokens (the quick benchmark suite's cap is 512): answers from a dozen tokens
  to the cap in one batch.
- rollout: the demo world's preference prompts as GRPO samples them (4 samples per prompt,
  temperature 1, up to 24 tokens; configs/smollm2/ppo_grpo.yaml's shape).
- greedy: the same prompts, greedy, up to --max-new-tokens (what --dry-run checks in CI).

Prints, per workload: useful tokens (up to each stop) per second for each path, their ratio,
and for greedy decoding whether both paths produced the same tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


def ifeval_prompts(tokenizer, count: int, seed: int) -> list[list[int]]:
    from align.data.catalog import load
    from align.generation import chat_prompt_ids

    rows = load("ifeval")[0]
    chosen = random.Random(seed).sample(rows, min(count, len(rows)))
    return [chat_prompt_ids(tokenizer, [{"role": "user", "content": r["prompt"]}]) for r in chosen]


def rollout_prompts(tokenizer, world, count: int, seed: int) -> list[list[int]]:
    from align.generation import chat_prompt_ids

    with open(world / "preference" / "train.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    chosen = random.Random(seed).sample(rows, min(count, len(rows)))
    return [chat_prompt_ids(tokenizer, [{"role": "user", "content": r["prompt"]}]) for r in chosen]


def run(model, prompts, settings, batch_size: int, own_loop: bool, seed: int):
    """(seconds, useful tokens, response ids per prompt) for one path over every batch."""
    import align.generation as generation

    original = generation.decodes_in_own_loop
    generation.decodes_in_own_loop = (lambda m: original(m)) if own_loop else (lambda m: False)
    try:
        torch.manual_seed(seed)
        rows_per_batch = max(1, batch_size // settings.samples_per_prompt)
        batches = generation.batches_by_length([len(p) for p in prompts], rows_per_batch)
        answers, tokens, start = {}, 0, time.perf_counter()
        for chunk in batches:
            rollout = generation.generate(model, [prompts[i] for i in chunk], settings)
            tokens += int(rollout.response_mask.sum())
            for j, i in enumerate(chunk):
                n = int(rollout.response_mask[j].sum())
                answers[i] = rollout.response_ids[j, :n].tolist()
        return time.perf_counter() - start, tokens, answers
    finally:
        generation.decodes_in_own_loop = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="hub id, folder, .gguf, models:<name> (default: the world's)")
    parser.add_argument("--workload", default="both", choices=["ifeval", "rollout", "greedy", "both"])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16, help="rows per batch (samples included)")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="IFEval's cap")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dry-run", action="store_true", help="tiny world, tiny shapes: the code path, no figures")
    args = parser.parse_args()

    from align.config.common import ModelConfig
    from align.demo import build_world
    from align.device import detect_device
    from align.generation import GenerationSettings, settings_for
    from align.models import load_causal_lm, load_tokenizer, resolve_model_path
    from align.precision import precision_scope, resolve_precision

    world = build_world(size="tiny" if args.dry_run else "demo", progress=False)
    model_dir = resolve_model_path(args.model) if args.model else str(world / "model")
    model_config = ModelConfig(name_or_path=model_dir)
    model, tokenizer = load_causal_lm(model_config), load_tokenizer(model_config)
    chosen = resolve_precision(args.precision, detect_device())
    workloads = ["ifeval", "rollout"] if args.workload == "both" else [args.workload]
    if args.dry_run:
        workloads, args.prompts, args.max_new_tokens = ["rollout", "greedy"], 4, 8
    print(f"model {model_dir}, precision {chosen}, seed {args.seed}, batch {args.batch_size}")
    for workload in workloads:
        if workload == "ifeval":
            prompts = ifeval_prompts(tokenizer, args.prompts, args.seed)
            settings = settings_for(tokenizer, model, args.max_new_tokens, do_sample=False)
        elif workload == "greedy":
            prompts = rollout_prompts(tokenizer, world, args.prompts, args.seed)
            settings = settings_for(tokenizer, model, args.max_new_tokens, do_sample=False)
        else:
            prompts = rollout_prompts(tokenizer, world, args.prompts, args.seed)
            base = settings_for(tokenizer, model, 24)
            settings = GenerationSettings(**{**base.__dict__, "samples_per_prompt": 4, "temperature": 1.0})
        with precision_scope(chosen):
            run(model, prompts[:2], settings, args.batch_size, True, args.seed)  # warm-up, untimed
            hf_seconds, hf_tokens, hf_answers = run(model, prompts, settings, args.batch_size, False, args.seed)
            own_seconds, own_tokens, own_answers = run(model, prompts, settings, args.batch_size, True, args.seed)
        hf_rate, own_rate = hf_tokens / hf_seconds, own_tokens / own_seconds
        same = "n/a (sampled)" if settings.do_sample else str(hf_answers == own_answers)
        print(
            f"{workload}: {len(prompts)} prompts x {settings.samples_per_prompt}, up to {settings.max_new_tokens} tokens | "
            f"generate {hf_tokens} tokens in {hf_seconds:.1f} s = {hf_rate:.1f}/s | "
            f"align loop {own_tokens} tokens in {own_seconds:.1f} s = {own_rate:.1f}/s | "
            f"ratio {own_rate / hf_rate:.2f}x | same greedy tokens: {same}"
        )


if __name__ == "__main__":
    main()
