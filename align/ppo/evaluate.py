"""Step 9: the SFT policy against the PPO policy on held-out prompts: mean reward-model score,
mean gold score (demo world), KL of PPO to the reference, and win rates (ties count half).

Both policies sample with the same seed and settings, so the comparison is paired.
"""

from __future__ import annotations

from pathlib import Path

import torch

from align.generation import GenerationSettings, decode_responses, generate
from align.ppo.models import Policy
from align.ppo.prompts import TokenizedPrompt
from align.ppo.scoring import score_texts
from align.rl.kl import sequence_kl
from align.rl.rollout import token_logprobs


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
) -> tuple[dict, list[dict]]:
    """Returns (figures, per-prompt samples)."""
    sft_scores, ppo_scores, sft_gold, ppo_gold, kls, sft_len, ppo_len, samples = [], [], [], [], [], [], [], []
    with torch.random.fork_rng():
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            ids, texts = [p.ids for p in chunk], [p.text for p in chunk]
            torch.manual_seed(seed + start)
            with policy.reference() as ref:
                sft = generate(ref, ids, settings)
            torch.manual_seed(seed + start)
            ppo = generate(policy.model, ids, settings)
            logp, _ = token_logprobs(policy.model, ppo, settings.temperature)
            with policy.reference() as ref:
                ref_logp, _ = token_logprobs(ref, ppo, settings.temperature)
            kls.append(sequence_kl(logp, ref_logp, ppo.response_mask))
            sft_text, ppo_text = decode_responses(policy.tokenizer, sft), decode_responses(policy.tokenizer, ppo)
            sft_scores.append(score_texts(scorer, texts, sft_text))
            ppo_scores.append(score_texts(scorer, texts, ppo_text))
            sft_len.append(sft.response_mask.sum(1))
            ppo_len.append(ppo.response_mask.sum(1))
            if gold is not None:
                sft_gold.append(torch.tensor([gold.score(p, r) for p, r in zip(texts, sft_text)]))
                ppo_gold.append(torch.tensor([gold.score(p, r) for p, r in zip(texts, ppo_text)]))
            samples += [{"prompt": p, "sft": s, "ppo": r} for p, s, r in zip(texts, sft_text, ppo_text)]

    def cat(xs):
        return torch.cat(xs).float()

    rm_sft, rm_ppo = cat(sft_scores), cat(ppo_scores)
    figures = {
        "prompts": len(prompts),
        "sft": {"rm_mean": float(rm_sft.mean()), "response_length": float(cat(sft_len).mean())},
        "ppo": {
            "rm_mean": float(rm_ppo.mean()),
            "response_length": float(cat(ppo_len).mean()),
            "kl_to_reference": float(cat(kls).mean()),
        },
        "win_rate_rm": _win_rate(rm_ppo, rm_sft),
    }
    if gold is not None:
        g_sft, g_ppo = cat(sft_gold), cat(ppo_gold)
        figures["sft"]["gold_mean"], figures["ppo"]["gold_mean"] = float(g_sft.mean()), float(g_ppo.mean())
        figures["win_rate_gold"] = _win_rate(g_ppo, g_sft)
        for row, a, b in zip(samples, g_sft.tolist(), g_ppo.tolist()):
            row["gold_sft"], row["gold_ppo"] = a, b
    for row, a, b in zip(samples, rm_sft.tolist(), rm_ppo.tolist()):
        row["rm_sft"], row["rm_ppo"] = a, b
    return figures, samples
