"""Online RL throughput: align's own loop (ppo, grpo, rloo) against TRL's GRPOTrainer and
RLOOTrainer, in one process, on the same SFT policy (a fresh LoRA adapter of the same rank),
the same reward (the config's reward model, or its `reward.sources`: rules and functions are
handed to TRL as its reward function), responses per step, KL weight and sampling settings.
With rule or function sources and a `data.test` set, each system's held-out task accuracy
(greedy, `eval.max_prompts` prompts) is measured after training, and once before: equal
episodes, the same prompts, the same checks.

    python bench/rl_throughput.py [--config configs/ppo_demo.yaml] [--steps 10] [--k 4] [--skip-trl] [key.sub=value ...]

Every system samples `rollout.batch_size` responses per step (the group methods as
batch_size / k prompts x k samples) and makes one optimisation pass with one gradient step per
batch (our ppo.epochs=1, minibatch = the batch; TRL num_iterations=1, steps_per_generation=1),
so the work per step is the same. Printed per system: episodes/s, the generate / score / train
split of the wall time, and the reward-model and gold scores gained per minute (mean of the
last 3 steps minus the first step, over the training loop's wall time; model loading excluded).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from printing import print_rows  # noqa: E402  (bench/, the script's own folder)


def gained(scores: list[float]) -> float:
    return sum(scores[-3:]) / len(scores[-3:]) - scores[0] if scores else float("nan")


def bench_ours(config, estimator: str, k: int, steps: int, out: Path) -> dict:
    import stages.ppo as ppo_stage
    from align.rundir import read_metrics

    config = config.model_copy(deep=True)
    episodes = config.rollout.batch_size
    if estimator != "gae":
        config.rollout.batch_size, config.rollout.samples_per_prompt = episodes // k, k
    config.advantage.estimator = estimator
    config.ppo.epochs, config.ppo.minibatch_size = 1, episodes
    config.schedule.steps, config.schedule.save_steps = steps, None
    config.eval.enabled = False
    config.output.output_dir, config.output.resume, config.output.report_to = str(out), "never", ["none"]
    ppo_stage.run(config)
    rows = read_metrics(out / "metrics.jsonl")
    split = {key: sum(r[key] for r in rows) for key in ("time_generate", "time_score", "time_train")}
    total = rows[-1]["time"] - rows[0]["time"] + sum(rows[0][key] for key in split)
    return {
        "total_s": total,
        **split,
        "episodes": steps * episodes,
        "rm_by_step": [r["rm_score"] for r in rows],
        "gold_by_step": [r.get("gold_score") for r in rows],
        **trained_model_accuracy(config, out),
    }


def bench_trl(config, trainer_name: str, k: int, steps: int, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    from align.models import load_causal_lm, load_tokenizer, resolve_model_path
    from align.ppo.evaluate import find_world, load_gold
    from align.ppo.prompts import load_prompts
    from align.ppo.scoring import build_sources

    Trainer, Config = {"grpo": (GRPOTrainer, GRPOConfig), "rloo": (RLOOTrainer, RLOOConfig)}[trainer_name]
    path = resolve_model_path(config.policy.name_or_path)
    tokenizer = load_tokenizer(config.policy, model_path=path)
    model = load_causal_lm(config.policy)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    sources = build_sources(config)  # the same sources our loop scores with
    gold = load_gold(find_world(config.data.train, config.eval.gold)) if config.eval.gold != "none" else None
    prompts = load_prompts(config.data.train, tokenizer, config.rollout.max_prompt_length, config.data.columns)
    columns = sorted({k for p in prompts for k in p.record if k not in ("prompt", "messages")})
    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": p.text}], **{c: p.record.get(c) for c in columns}} for p in prompts]
    )
    times = {"time_generate": 0.0, "time_score": 0.0}
    rm_by_call: list[float] = []
    gold_by_call: list[float] = []

    def reward(prompts, completions, **kwargs):
        start = time.perf_counter()
        texts = [p[-1]["content"] for p in prompts]
        answers = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        records = [{c: kwargs[c][i] for c in columns if c in kwargs} for i in range(len(answers))]
        scores = sources.score(texts, answers, records).aggregate
        rm_by_call.append(float(scores.mean()))
        if gold is not None:
            gold_by_call.append(sum(gold.score(p, a) for p, a in zip(texts, answers)) / len(answers))
        times["time_score"] += time.perf_counter() - start
        return scores.tolist()

    original = Trainer._generate_single_turn

    def timed_generate(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            times["time_generate"] += time.perf_counter() - start

    Trainer._generate_single_turn = timed_generate
    lora = config.update.lora
    args = Config(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=config.rollout.batch_size,
        num_generations=k,
        steps_per_generation=1,
        num_iterations=1,
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
        disable_tqdm=True,
    )
    trainer = Trainer(
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
        Trainer._generate_single_turn = original
    total = time.perf_counter() - start
    times["time_train"] = total - times["time_generate"] - times["time_score"]
    return {
        "total_s": total,
        **times,
        "episodes": steps * config.rollout.batch_size,
        "rm_by_step": rm_by_call,
        "gold_by_step": gold_by_call or [None],
        **heldout_accuracy(config, trainer.model.eval(), tokenizer),
    }


def heldout_accuracy(config, model, tokenizer) -> dict:
    """{'heldout_<source>': mean} of the rule / function sources on greedy answers to data.test ({} without)."""
    from align.generation import settings_for
    from align.ppo.evaluate import heldout_checks
    from align.ppo.prompts import load_prompts
    from align.ppo.scoring import build_sources

    sources = build_sources(config)
    if not sources.checks or not config.data.test:
        return {}
    prompts = load_prompts(config.data.test, tokenizer, config.rollout.max_prompt_length, config.data.columns)
    prompts = prompts[: config.eval.max_prompts] if config.eval.max_prompts else prompts
    greedy = settings_for(tokenizer, model, config.rollout.max_new_tokens, do_sample=False)
    found = heldout_checks(model, tokenizer, sources, prompts, greedy, config.eval.batch_size)
    return {f"heldout_{label}": round(value, 4) for label, value in found.items()}


def trained_model_accuracy(config, run_dir: Path) -> dict:
    """Held-out accuracy of one of our runs, read back from its final/ like any later stage would."""
    from align.config.common import ModelConfig
    from align.models import load_causal_lm, load_tokenizer

    model_config = ModelConfig(name_or_path=str(run_dir / "final"))
    tokenizer = load_tokenizer(model_config)
    return heldout_accuracy(config, load_causal_lm(model_config).eval(), tokenizer)


def report(name: str, r: dict) -> dict:
    minutes = r["total_s"] / 60
    row = {
        "system": name,
        "episodes": r["episodes"],
        "wall_s": round(r["total_s"], 1),
        "episodes_per_s": round(r["episodes"] / r["total_s"], 2),
        "generate_%": round(100 * r["time_generate"] / r["total_s"], 1),
        "score_%": round(100 * r["time_score"] / r["total_s"], 1),
        "train_%": round(100 * r["time_train"] / r["total_s"], 1),
        "rm_gain_per_min": round(gained(r["rm_by_step"]) / minutes, 3),
    }
    golds = [g for g in r["gold_by_step"] if g is not None]
    row["gold_gain_per_min"] = round(gained(golds) / minutes, 3) if golds else None
    row.update({k: v for k, v in r.items() if k.startswith("heldout_")})
    return row


def before_training(config) -> dict:
    from align.models import load_causal_lm, load_tokenizer, resolve_model_path

    tokenizer = load_tokenizer(config.policy, model_path=resolve_model_path(config.policy.name_or_path))
    return heldout_accuracy(config, load_causal_lm(config.policy).eval(), tokenizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ppo_demo.yaml")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--k", type=int, default=4, help="samples per prompt of the group methods")
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument(
        "--systems",
        nargs="+",
        default=["ppo", "grpo", "rloo", "trl-grpo", "trl-rloo"],
        help="Which to run (e.g. --systems grpo trl-grpo for the GRPO comparison alone).",
    )
    parser.add_argument("overrides", nargs="*")
    cli = parser.parse_args()

    import torch

    from align.cli.common import build_config

    config = build_config("ppo", Path(cli.config), cli.overrides)
    if config.rollout.batch_size % cli.k:
        sys.exit(f"rollout.batch_size ({config.rollout.batch_size}) must be a multiple of --k ({cli.k})")
    from peak_memory import PeakRSS

    rows = []
    base = before_training(config)
    if base:
        rows.append({"system": "before training (the policy as loaded)", **base})
    with tempfile.TemporaryDirectory() as tmp:
        for estimator, label in (("gae", "align ppo (critic)"), ("grpo", "align grpo"), ("rloo", "align rloo")):
            if {"gae": "ppo"}.get(estimator, estimator) in cli.systems:
                with PeakRSS() as peak:
                    found = bench_ours(config, estimator, cli.k, cli.steps, Path(tmp) / estimator)
                rows.append({**report(label, found), "peak_rss_mib": round(peak.mib)})
        for name in ("grpo", "rloo"):
            if not cli.skip_trl and f"trl-{name}" in cli.systems:
                label = f"TRL {'GRPOTrainer' if name == 'grpo' else 'RLOOTrainer'}"
                with PeakRSS() as peak:
                    found = bench_trl(config, name, cli.k, cli.steps, Path(tmp) / f"trl-{name}")
                rows.append({**report(label, found), "peak_rss_mib": round(peak.mib)})
    print(
        f"\nonline RL throughput: {cli.steps} steps of {config.rollout.batch_size} responses (group methods: "
        f"{config.rollout.batch_size // cli.k} prompts x {cli.k}), max_new_tokens={config.rollout.max_new_tokens}, "
        f"kl_coef={config.kl.kl_coef}, one gradient step per batch, {os.cpu_count()} CPU cores, "
        f"torch threads={torch.get_num_threads()}, seed {config.schedule.seed}\n"
    )
    ours, trl = (next((r for r in rows if r["system"] == name), None) for name in ("align grpo", "TRL GRPOTrainer"))
    if ours and trl:
        print(f"align grpo / TRL GRPOTrainer episodes/s: {ours['episodes_per_s'] / trl['episodes_per_s']:.2f}x\n")
    print_rows(rows)


if __name__ == "__main__":
    main()
