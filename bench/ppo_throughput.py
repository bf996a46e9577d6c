"""PPO throughput: our `align ppo` against TRL's RLOOTrainer on the same policy, reward model,
KL weight and number of samples per step. Prints episodes/s, the time split and reward gained
per wall-clock minute for each.

    python bench/ppo_throughput.py --config configs/ppo_demo.yaml --steps 10 [key.sub=value ...]

Both start from the same SFT policy with a fresh LoRA adapter (same rank), sample
`rollout.batch_size` responses per step (TRL: batch_size / k prompts x k generations, k=2,
since RLOO needs several samples per prompt) and score text with the same RewardScorer.
"Reward gained" = mean RM score of the last 3 steps minus that of the first step. Wall time is
the training loop only (model loading excluded) for both: our steps' timestamps, TRL's train().
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def gained(scores: list[float]) -> float:
    return sum(scores[-3:]) / len(scores[-3:]) - scores[0] if scores else float("nan")


def bench_ours(config, steps: int, out: Path) -> dict:
    import stages.ppo as ppo_stage
    from align.rundir import read_metrics

    config = config.model_copy(deep=True)
    config.schedule.steps, config.schedule.save_steps = steps, None
    config.eval.enabled = False
    config.output.output_dir, config.output.resume, config.output.report_to = str(out), "never", ["none"]
    ppo_stage.run(config)
    rows = read_metrics(out / "metrics.jsonl")
    split = {k: sum(r[k] for r in rows) for k in ("time_generate", "time_score", "time_train")}
    total = (
        rows[-1]["time"] - rows[0]["time"] + rows[0]["time_generate"] + rows[0]["time_score"] + rows[0]["time_train"]
    )
    return {
        "total_s": total,
        **split,
        "episodes": steps * config.rollout.batch_size,
        "rm_by_step": [r["rm_score"] for r in rows],
    }


def bench_trl(config, steps: int, out: Path, k: int = 2) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import RLOOConfig, RLOOTrainer

    from align.models import load_causal_lm, load_tokenizer, resolve_model_path
    from align.ppo.prompts import load_prompts
    from align.ppo.scoring import load_scorer

    path = resolve_model_path(config.policy.name_or_path)
    tokenizer = load_tokenizer(config.policy, model_path=path)
    model = load_causal_lm(config.policy)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    scorer = load_scorer(config.reward_model)
    prompts = load_prompts(
        config.data.train, tokenizer, config.rollout.max_prompt_length, config.data.columns, config.data.max_samples
    )
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p.text}]} for p in prompts])
    times = {"time_generate": 0.0, "time_score": 0.0}
    rm_by_call: list[float] = []

    def reward(prompts, completions, **_):
        start = time.perf_counter()
        texts = [p[-1]["content"] for p in prompts]
        answers = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        scores = scorer.score(texts, answers)
        rm_by_call.append(float(scores.mean()))
        times["time_score"] += time.perf_counter() - start
        return scores.tolist()

    original = RLOOTrainer._generate_single_turn

    def timed_generate(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            times["time_generate"] += time.perf_counter() - start

    RLOOTrainer._generate_single_turn = timed_generate
    lora = config.update.lora
    args = RLOOConfig(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=config.rollout.batch_size,
        num_generations=k,
        max_completion_length=config.rollout.max_new_tokens,
        temperature=config.rollout.temperature,
        beta=config.kl.kl_coef,
        learning_rate=config.optim.policy_lr,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        bf16=False,
        fp16=False,
        use_cpu=not torch.cuda.is_available(),
        seed=config.schedule.seed,
        num_iterations=1,
        disable_tqdm=True,
    )
    trainer = RLOOTrainer(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    start = time.perf_counter()
    try:
        trainer.train()
    finally:
        RLOOTrainer._generate_single_turn = original
    total = time.perf_counter() - start
    times["time_train"] = total - times["time_generate"] - times["time_score"]
    return {"total_s": total, **times, "episodes": steps * config.rollout.batch_size, "rm_by_step": rm_by_call}


def report(name: str, r: dict) -> dict:
    minutes = r["total_s"] / 60
    row = {
        "system": name,
        "episodes": r["episodes"],
        "wall_s": round(r["total_s"], 1),
        "episodes_per_s": round(r["episodes"] / r["total_s"], 3),
        "generate_%": round(100 * r["time_generate"] / r["total_s"], 1),
        "score_%": round(100 * r["time_score"] / r["total_s"], 1),
        "train_%": round(100 * r["time_train"] / r["total_s"], 1),
        "rm_first": round(r["rm_by_step"][0], 4) if r["rm_by_step"] else None,
        "rm_last3": round(sum(r["rm_by_step"][-3:]) / max(len(r["rm_by_step"][-3:]), 1), 4),
        "rm_gain_per_min": round(gained(r["rm_by_step"]) / minutes, 4),
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ppo_demo.yaml")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("overrides", nargs="*")
    cli = parser.parse_args()

    from align.cli.common import build_config

    config = build_config("ppo", Path(cli.config), cli.overrides)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(report("align ppo (PPO, critic)", bench_ours(config, cli.steps, Path(tmp) / "ours")))
        if not cli.skip_trl:
            rows.append(report("TRL RLOOTrainer (k=2)", bench_trl(config, cli.steps, Path(tmp) / "trl")))
    print(
        f"\nPPO throughput, {cli.steps} steps of {config.rollout.batch_size} samples, max_new_tokens={config.rollout.max_new_tokens}, "
        f"kl_coef={config.kl.kl_coef}, torch threads={__import__('torch').get_num_threads()}"
    )
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
