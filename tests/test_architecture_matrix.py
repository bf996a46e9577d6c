"""The architecture matrix: tiny random-weight models of sixteen architectures (built here, no
download, all on the tiny world's tokenizer; Granite, Cohere and ERNIE 4.5 have no
sequence-classification class in transformers) through every SFT update mode (only the intended
parameters change), `sft merge`, a reward model on the SFT result, PPO with LoRA and with full
updates, `annotate generate` and `rag answer`. What an architecture cannot do is refused with
a message naming the fix, before training."""

from __future__ import annotations

from pathlib import Path

import architectures
import pytest
import torch

import stages.ppo
import stages.reward
import stages.sft
from align.adapters import is_adapter_key
from align.architecture import transformer_blocks
from align.cli.common import build_config
from align.config.common import ModelConfig
from align.config.sft import SFTConfig
from align.errors import AlignInputError
from align.models import load_causal_lm
from align.peft_builders import HEAD_NAMES, final_norm_prefixes

pytestmark = pytest.mark.heavy
MODES = ("full", "partial", "lora", "adapter", "prompt_tuning", "prefix_tuning", "feature_extraction")
TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny"


@pytest.fixture(scope="module")
def tokenizer(tiny_world):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_world / "model")


def sft(tiny_world, model: Path, out: Path, update: dict):
    return stages.sft.run(
        SFTConfig.model_validate(
            {
                "model": {"name_or_path": str(model)},
                "data": {"train": str(tiny_world / "sft" / "train.jsonl"), "max_samples": 4, "max_length": 96},
                "update": update,
                "training": {
                    "max_steps": 1,
                    "batch_size": 4,
                    "learning_rate": 0.01,
                    "warmup_ratio": 0.0,
                    "lr_scheduler": "constant",
                    "save_steps": None,
                },
                "eval": {
                    "data": str(tiny_world / "preference" / "test.jsonl"),
                    "reference_column": "reference",
                    "max_examples": 2,
                    "max_new_tokens": 3,
                    "compare_base": False,
                },
                "output": {"output_dir": str(out), "report_to": ["none"]},
            }
        )
    )


def base_weights(run_or_model: Path) -> dict[str, torch.Tensor]:
    """The base model's weights as a run holds them (a PEFT adapter's base, without adapters)."""
    model = load_causal_lm(ModelConfig(name_or_path=str(run_or_model)))
    if hasattr(model, "get_base_model"):
        state = model.get_base_model().state_dict()
        return {k.replace(".base_layer", ""): v for k, v in state.items() if "lora_" not in k}
    return {k: v for k, v in model.state_dict().items() if not is_adapter_key(k)}


def intended(mode: str, model_dir: Path, names: set[str]) -> set[str] | None:
    """The parameters a mode may change (None: any)."""
    if mode == "full":
        return None
    if mode == "feature_extraction":
        return {n for n in names if any(h in n.split(".") for h in HEAD_NAMES)}
    if mode == "partial":
        model = load_causal_lm(ModelConfig(name_or_path=str(model_dir)))
        stack, blocks = transformer_blocks(model)
        prefixes = [f"{stack}.{len(blocks) - 1}.", *final_norm_prefixes(model, stack)]
        tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
        head = set() if tied else {n for n in names if any(h in n.split(".") for h in HEAD_NAMES)}
        return {n for n in names if n.startswith(tuple(prefixes))} | head
    return set()  # adapters of every kind leave the base bit-identical


@pytest.mark.parametrize("kind", architectures.ARCHITECTURES)
def test_architecture(kind, tiny_world, tokenizer, tmp_path):
    base = architectures.build(kind, tmp_path / "base", tokenizer)
    before = base_weights(base)
    update = {"prompt": {"num_virtual_tokens": 2}, "lora": {"r": 2}, "partial": {"trainable_layers": 1}}
    for mode in MODES:
        settings = {**update, "mode": mode}
        if mode == "adapter":
            settings["adapter"] = {"bottleneck_size": 2}
            if kind == "opt":  # its feed-forward is two bare linear layers: the stage says so, before training
                with pytest.raises(AlignInputError, match="OPTDecoderLayer has no feed_forward sub-layer"):
                    sft(tiny_world, base, tmp_path / "opt-adapter-refused", settings)
                settings["adapter"]["location"] = ["attention"]
        result = sft(tiny_world, base, tmp_path / mode, settings)
        assert result.metrics["global_steps"] == 1 and "tuned_exact_match" in result.metrics, (kind, mode)
        after = base_weights(result.run_dir)
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        allowed = intended(mode, base, set(before))
        if allowed is None:
            assert changed, (kind, mode)
        else:
            assert changed <= allowed, (kind, mode, sorted(changed - allowed)[:3])
            if mode in ("feature_extraction", "partial"):
                assert changed, (kind, mode)

    from align.sft.export import merge_adapter

    merged = merge_adapter(tmp_path / "lora")
    assert load_causal_lm(ModelConfig(name_or_path=str(merged))) is not None

    reward = stages.reward.run(
        build_config(
            "reward",
            TINY / "reward.yaml",
            [
                f"model.name_or_path={tmp_path / 'lora'}",
                "training.max_steps=2",
                "eval.compare_untrained=false",
                "data.max_samples=16",
                f"output.output_dir={tmp_path / 'rm'}",
                "output.report_to=[none]",
            ],
        )
    )
    for mode in ("lora", "full"):
        ppo = stages.ppo.run(
            build_config(
                "ppo",
                TINY / "ppo.yaml",
                [
                    f"policy.name_or_path={tmp_path / 'lora'}",
                    f"reward_model={reward.run_dir}",
                    f"update.mode={mode}",
                    "schedule.steps=1",
                    "eval.max_prompts=2",
                    "rollout.batch_size=4",
                    "ppo.minibatch_size=4",
                    f"output.output_dir={tmp_path / ('ppo-' + mode)}",
                ],
            )
        )
        assert ppo.metrics["eval_ppo_kl_to_reference"] == ppo.metrics["eval_ppo_kl_to_reference"], (
            kind,
            mode,
        )  # not NaN

    from align.config.annotate import GenerateConfig
    from align.config.rag import GenerationConfig
    from align.models import load_tokenizer
    from align.rag.generate import Generator
    from annotation_ui.generate import generate_items

    model_config = ModelConfig(name_or_path=str(tmp_path / "lora"))
    items = generate_items(
        load_causal_lm(model_config),
        load_tokenizer(model_config),
        [{"prompt": "What is 2 + 3?"}, {"prompt": "Name a colour."}],
        GenerateConfig(k=2, max_new_tokens=6, max_rounds=1),
        "m",
        progress=False,
    )
    assert items.prompts == 2
    answers = Generator(model_config, GenerationConfig(max_new_tokens=4)).generate(["PASSAGE\n\nQuestion?"])
    assert len(answers) == 1 and not answers[0].truncated
