"""Build the four PPO roles from the config: policy (trainable), reference (frozen), critic,
and the reward scorer, and check that they fit together before any sampling starts.

With LoRA the SFT weights are merged into the base once and a fresh adapter is trained on
top, so "adapter disabled" is exactly the SFT policy: the reference costs no extra memory.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass

import torch
from torch import nn

from align.config.common import UpdateConfig
from align.config.ppo import PPOConfig
from align.device import detect_device, resolve_dtype
from align.errors import AlignInputError
from align.models import (
    context_length,
    count_parameters,
    is_peft_adapter,
    load_causal_lm,
    load_tokenizer,
    resolve_model_path,
)
from align.precision import autocast_forward
from align.rl.value_model import (
    ValueModel,
    critic_from_causal_lm,
    critic_from_sequence_classifier,
)


@dataclass
class Policy:
    model: nn.Module  # the trainable policy (a PeftModel for LoRA)
    reference_model: nn.Module | None  # a frozen model (full fine-tuning, or `reference` given); None: adapter off
    tokenizer: object
    path: str  # where the SFT policy came from
    lora: bool | None = None  # a PeftModel policy (default: no reference model given)

    @property
    def is_lora(self) -> bool:
        return self.reference_model is None if self.lora is None else self.lora

    @contextlib.contextmanager
    def reference(self):
        """Context yielding the model that computes reference log-probs (LoRA without a
        separate reference: the policy with its adapter off)."""
        if self.reference_model is None:
            with self.model.disable_adapter():
                yield self.model
        else:
            yield self.reference_model


def _lora_targets(update: UpdateConfig):
    return "all-linear" if update.lora.target_modules is None else update.lora.target_modules


def build_policy(config: PPOConfig) -> Policy:
    path = resolve_model_path(config.policy.name_or_path, resolve_dtype(config.policy.dtype, detect_device()))
    tokenizer = load_tokenizer(config.policy, model_path=path)
    model = load_causal_lm(config.policy)
    if is_peft_adapter(path):  # an SFT LoRA: fold it into the base so the reference is the SFT policy
        model = model.merge_and_unload()
    model.eval()  # no dropout anywhere: old and new log-probs must come from the same function
    reference = _reference(config)
    if reference is not None and reference.config.vocab_size != model.config.vocab_size:
        raise AlignInputError(
            f"reference {config.reference} has a vocabulary of {reference.config.vocab_size} tokens, the policy "
            f"{model.config.vocab_size}: the KL penalty compares their token log-probs, so they must share a tokenizer"
        )
    if config.update.mode == "full":
        reference = reference or copy.deepcopy(model).requires_grad_(False)
        model.requires_grad_(True)  # a merged SFT LoRA comes back frozen (PEFT froze its base)
        return Policy(model, reference, tokenizer, path, lora=False)
    from peft import LoraConfig, get_peft_model

    lora = config.update.lora
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=_lora_targets(config.update),
        task_type="CAUSAL_LM",
    )
    model.requires_grad_(False)
    peft_model = get_peft_model(model, peft_config)
    peft_model.eval()
    return Policy(peft_model, reference, tokenizer, path, lora=True)


def _reference(config: PPOConfig) -> nn.Module | None:
    """`reference`: a frozen model of its own (e.g. the SFT model while the policy continues a
    later checkpoint); None: the policy as it starts."""
    if config.reference is None:
        return None
    reference_config = config.policy.model_copy(update={"name_or_path": config.reference})
    model = load_causal_lm(reference_config)
    if is_peft_adapter(resolve_model_path(config.reference)):
        model = model.merge_and_unload()
    return model.eval().requires_grad_(False)


def build_critic(config: PPOConfig, policy: Policy, scorer) -> ValueModel:
    """The critic (trainable as a whole, separate from the policy and from the frozen scorer)."""
    if config.critic.init == "reward":
        rm = scorer.model
        if getattr(scorer.meta, "input_format", "chat") != "chat":
            raise AlignInputError(
                f"critic.init = 'reward' needs a decoder reward model, but {scorer.path} is an encoder (it reads the whole "
                "text at once, so it cannot value a prefix); set critic.init=policy"
            )
        if scorer.tokenizer.get_vocab() != policy.tokenizer.get_vocab():
            raise AlignInputError(
                f"critic.init = 'reward' needs the reward model ({scorer.path}) to share the policy's tokenizer, and it does not "
                "(policy and reward model come from different base models); set critic.init=policy"
            )
        critic = critic_from_sequence_classifier(copy.deepcopy(rm))
    else:
        base = load_causal_lm(config.policy)
        if hasattr(base, "merge_and_unload"):
            base = base.merge_and_unload()
        critic = critic_from_causal_lm(base)
    critic.float().eval().requires_grad_(True)
    return autocast_forward(critic)


def check_context(config: PPOConfig, policy: Policy) -> None:
    """A prompt plus its response (with tools: its whole episode) must fit the policy's context."""
    limit = context_length(policy.model)
    if config.tools.env is not None:
        after = config.episode_tokens
        what = "tools.max_tokens (the episode after the prompt)"
    else:
        after, what = config.rollout.max_new_tokens, "rollout.max_new_tokens"
    need = config.rollout.max_prompt_length + after
    if limit is not None and need > limit:
        raise AlignInputError(
            f"rollout.max_prompt_length + {what} = {need} exceeds the policy's context of {limit} tokens; "
            f"lower rollout.max_prompt_length to at most {limit - after}"
        )


def merged_state_dict(policy: Policy) -> dict[str, torch.Tensor]:
    """The policy's weights as a plain model's state dict (LoRA folded in), on the CPU.

    Merges temporarily and unmerges, so the live policy is unchanged (this also works on
    ZeRO-3 inside GatheredParameters, where in-place edits would otherwise be discarded).
    """
    if not policy.is_lora:
        return {k: v.detach().cpu().clone() for k, v in policy.model.state_dict().items()}
    policy.model.merge_adapter()
    try:
        state = policy.model.get_base_model().state_dict()
        return {k.replace(".base_layer", ""): v.detach().cpu().clone() for k, v in state.items() if "lora_" not in k}
    finally:
        policy.model.unmerge_adapter()


def save_final(policy: Policy, folder) -> None:
    """final/: a plain model + tokenizer that `from_pretrained` loads (rank 0 only; params gathered)."""
    model = policy.model.get_base_model() if policy.is_lora else policy.model
    model.save_pretrained(folder, state_dict=merged_state_dict(policy))
    policy.tokenizer.save_pretrained(folder)


def describe(policy: Policy, critic: nn.Module | None) -> str:
    p_train, p_total = count_parameters(policy.model)
    if not policy.is_lora:
        kind = "full, frozen reference copy"
    elif policy.reference_model is None:
        kind = "LoRA, reference = adapter off"
    else:
        kind = "LoRA, reference = a separate frozen model"
    critic_text = f"critic: {count_parameters(critic)[0]:,} trainable" if critic is not None else "no critic"
    return f"policy: {p_train:,} trainable of {p_total:,} ({kind}); {critic_text}"
