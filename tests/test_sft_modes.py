"""Each update mode trains a tiny model for a few steps through `align sft`, and only the intended parameters change."""

from __future__ import annotations

import pytest
import torch

from align.config.common import ModelConfig, UpdateConfig
from align.config.sft import SFTConfig
from align.device import detect_device
from align.errors import AlignInputError
from align.models import load_causal_lm


def run_mode(world, out, update: dict):
    import stages.sft

    config = SFTConfig.model_validate(
        {
            "model": {"name_or_path": str(world / "model")},
            "data": {"train": str(world / "sft" / "train.jsonl"), "max_samples": 16, "max_length": 96},
            "update": update,
            "training": {
                "max_steps": 3,
                "batch_size": 4,
                "learning_rate": 0.05,
                "warmup_ratio": 0.0,
                "lr_scheduler": "constant",
            },
            "eval": {"enabled": False},
            "output": {"output_dir": str(out), "report_to": ["none"]},
        }
    )
    return stages.sft.run(config)


def base_state(world) -> dict[str, torch.Tensor]:
    model = load_causal_lm(ModelConfig(name_or_path=str(world / "model")))
    return {k: v.clone() for k, v in model.state_dict().items()}


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_full_changes_every_weight(tiny_world, tmp_path):
    before = base_state(tiny_world)
    result = run_mode(tiny_world, tmp_path / "run", {"mode": "full"})
    after = load_causal_lm(ModelConfig(name_or_path=str(result.run_dir))).state_dict()
    assert changed(before, after) == set(before)


def test_partial_changes_only_last_block_and_norm(tiny_world, tmp_path):
    before = base_state(tiny_world)
    n_layers = 1 + max(int(k.split(".")[2]) for k in before if k.startswith("model.layers."))
    result = run_mode(tiny_world, tmp_path / "run", {"mode": "partial", "partial": {"trainable_layers": 1}})
    after = load_causal_lm(ModelConfig(name_or_path=str(result.run_dir))).state_dict()
    last = f"model.layers.{n_layers - 1}."
    expected = {k for k in before if k.startswith(last) or k == "model.norm.weight"}
    assert changed(before, after) == expected  # embeddings (tied head) and earlier blocks: bit-identical


def test_partial_named_modules(tiny_world):
    model = load_causal_lm(ModelConfig(name_or_path=str(tiny_world / "model")))
    from align.peft_builders import apply_update_mode

    update = UpdateConfig(mode="partial", partial={"trainable_layers": 0, "trainable_modules": ["embed_tokens"]})
    apply_update_mode(model, update)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"model.embed_tokens.weight"}
    with pytest.raises(AlignInputError, match="no parameter name contains 'nonexistent'"):
        apply_update_mode(model, UpdateConfig(mode="partial", partial={"trainable_modules": ["nonexistent"]}))


@pytest.mark.parametrize("mode", ["lora", "prompt_tuning", "prefix_tuning"])
def test_adapter_modes_leave_base_bit_identical(tiny_world, tmp_path, mode):
    from peft import PeftModel

    before = base_state(tiny_world)
    update = {"mode": mode, "lora": {"r": 4, "target_modules": "all-linear"}, "prompt": {"num_virtual_tokens": 4}}
    result = run_mode(tiny_world, tmp_path / "run", update)
    final = result.run_dir / "final"
    assert (final / "adapter_config.json").is_file() and not (final / "model.safetensors").exists()
    model = load_causal_lm(ModelConfig(name_or_path=str(result.run_dir)))
    assert isinstance(model, PeftModel)
    base_after = model.get_base_model().state_dict()
    base_keys = {k.replace(".base_layer", ""): k for k in base_after if "lora_" not in k}
    for key, tensor in before.items():
        assert torch.equal(tensor, base_after[base_keys[key]]), key
    adapter = {k: v for k, v in model.state_dict().items() if "lora_B" in k or "prompt_encoder" in k}
    assert adapter, "the adapter has weights"
    if mode == "lora":  # B starts at zero: any non-zero entry means it trained
        assert any(v.abs().sum() > 0 for v in adapter.values())


def test_qlora_without_cuda_is_an_input_error():
    from align.peft_builders import check_update_supported

    if detect_device().kind == "cuda":
        pytest.skip("this machine has CUDA")
    with pytest.raises(AlignInputError, match="qlora needs a CUDA GPU"):
        check_update_supported(UpdateConfig(mode="qlora"), detect_device())


def test_default_lora_targets_per_architecture(tiny_world):
    from align.peft_builders import default_lora_targets

    model = load_causal_lm(ModelConfig(name_or_path=str(tiny_world / "model")))
    assert default_lora_targets(model) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
