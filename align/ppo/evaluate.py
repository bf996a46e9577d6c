"""Step 9: the SFT policy against the PPO policy on held-out prompts: mean reward-model score,
mean gold score (demo world), KL of PPO to the reference, and win rates (ties count half).

Both policies sample with the same seed and settings, so the comparison is paired.
"""

from __future__ import annotations

from pathlib import Path

import torch

from align.generation import GenerationSettings, decode_responses, generate
from align.ppo.experience import source_metrics
from align.ppo.models import Policy
from align.ppo.prompts import TokenizedPrompt
from align.ppo.scoring import RewardSources, score_texts, with_env_rewards
from align.rl.kl import sequence_kl
from align.rl.rollout import token_logprobs
from align.tools.episodes import EpisodeSettings, episode_metrics, run_episodes


def find_world(data_path: str, gold: str) -> Path | None:
    """The demo world whose gold preference applies: eval.gold, or the nearest world.json above the data."""
    if gold == "none":
        return None
    if gold != "auto":
        return Path(gold)
    for parent in Path(data_path).resolve().parents:
        if (parent / "world.json").is_file():
            return parent
    return None


def load_gold(world: Path | None):
    if world is None:
        return None
    try:
        from align.demo import GoldPreference
    except ImportError:
        return None
    return GoldPreference.from_world(world)


def _win_rate(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a > b).float() + 0.5 * (a == b).float()).mean())


@torch.no_grad()
def compare_policies(
    policy: Policy,
    scorer,
    gold,
    prompts: list[TokenizedPrompt],
    settings: GenerationSettings,
    batch_size: int,
    seed: int,
    name: str = "ppo",
) -> tuple[dict, list[dict]]:
    """Returns (figures, per-prompt samples); figures hold "sft" and `name` (the tuned policy) side
    by side. `scorer` (a RewardScorer) may be None: then no RM figures."""
    texts_all, sft_all, tuned_all, kls, sft_len, tuned_len = [], [], [], [], [], []
    with torch.random.fork_rng():
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            ids = [p.ids for p in chunk]
            torch.manual_seed(seed + start)
            with policy.reference() as ref:
                sft = generate(ref, ids, settings)
            torch.manual_seed(seed + start)
            tuned = generate(policy.model, ids, settings)
            logp, _ = token_logprobs(policy.model, tuned, settings.temperature)
            with policy.reference() as ref:
                ref_logp, _ = token_logprobs(ref, tuned, settings.temperature)
            kls.append(sequence_kl(logp, ref_logp, tuned.response_mask))
            texts_all += [p.text for p in chunk]
            sft_all += decode_responses(policy.tokenizer, sft)
            tuned_all += decode_responses(policy.tokenizer, tuned)
            sft_len.append(sft.response_mask.sum(1))
            tuned_len.append(tuned.response_mask.sum(1))
    cat = lambda xs: torch.cat(xs).float()  # noqa: E731
    figures = {
        "prompts": len(prompts),
        "sft": {"response_length": float(cat(sft_len).mean())},
        name: {"response_length": float(cat(tuned_len).mean()), "kl_to_reference": float(cat(kls).mean())},
    }
    samples = [{"prompt": p, "sft": s, name: r} for p, s, r in zip(texts_all, sft_all, tuned_all)]
    if scorer is not None:
        rm_sft, rm_tuned = score_texts(scorer, texts_all, sft_all), score_texts(scorer, texts_all, tuned_all)
        figures["sft"]["rm_mean"], figures[name]["rm_mean"] = float(rm_sft.mean()), float(rm_tuned.mean())
        figures["win_rate_rm"] = _win_rate(rm_tuned, rm_sft)
        for row, a, b in zip(samples, rm_sft.tolist(), rm_tuned.tolist()):
            row["rm_sft"], row[f"rm_{name}"] = a, b
    if gold is not None:
        g_sft = torch.tensor([gold.score(p, r) for p, r in zip(texts_all, sft_all)])
        g_tuned = torch.tensor([gold.score(p, r) for p, r in zip(texts_all, tuned_all)])
        figures["sft"]["gold_mean"], figures[name]["gold_mean"] = float(g_sft.mean()), float(g_tuned.mean())
        figures["win_rate_gold"] = _win_rate(g_tuned, g_sft)
        if hasattr(gold, "parts"):  # the demo world's rule: right answers, polite openers
            for key, responses in (("sft", sft_all), (name, tuned_all)):
                parts = [gold.parts(p, r) for p, r in zip(texts_all, responses)]
                figures[key]["right_share"] = sum(x["right"] for x in parts) / max(len(parts), 1)
                figures[key]["polite_share"] = sum(x["polite"] for x in parts) / max(len(parts), 1)
        for row, a, b in zip(samples, g_sft.tolist(), g_tuned.tolist()):
            row["gold_sft"], row[f"gold_{name}"] = a, b
    return figures, samples


@torch.no_grad()
def heldout_checks(
    model,
    tokenizer,
    sources,
    prompts: list[TokenizedPrompt],
    settings: GenerationSettings,
    batch_size: int,
    environment=None,
    episode: EpisodeSettings | None = None,
) -> dict[str, float]:
    """Task accuracy: each rule / function / environment source's mean over greedy answers to
    held-out prompts (what a rising training reward should come with; a falling one means the
    reward is being gamed). With an `environment` the answers are episodes with its tools, and
    the tools' use per episode (tool/calls, tool/turns, ...) is measured too."""
    checks = sources.checks
    if not checks or not prompts:
        return {}
    texts, answers, records, episodes = [], [], [], []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        if environment is None:
            answers += decode_responses(tokenizer, generate(model, [p.ids for p in chunk], settings))
            records += [p.record for p in chunk]
        else:
            _, done = run_episodes(
                model, tokenizer, [p.messages for p in chunk], [p.record for p in chunk], environment, settings, episode
            )
            answers += [e.final_text for e in done]
            records += with_env_rewards([p.record for p in chunk], done)
            episodes += done
        texts += [p.text for p in chunk]
    labels = [source.label for source in checks]
    figures = source_metrics(RewardSources(checks).score(texts, answers, records).values.T, labels, prefix="")
    found = {label: figures[label] for label in labels}
    return {**found, **episode_metrics(episodes)} if episodes else found
