"""Device detection decides dtype and TRL's precision flags; CPU must get fp32, never bf16."""

import torch

from align.device import DeviceInfo, detect_device, precision_flags, resolve_attn_implementation, resolve_dtype

CPU = DeviceInfo(kind="cpu", name="cpu", count=1, bf16=False, fp16=False)
H100 = DeviceInfo(kind="cuda", name="H100", count=8, bf16=True, fp16=True)
V100 = DeviceInfo(kind="cuda", name="V100", count=1, bf16=False, fp16=True)


def test_auto_dtype_per_device():
    assert resolve_dtype("auto", CPU) == torch.float32
    assert resolve_dtype("auto", H100) == torch.bfloat16
    assert resolve_dtype("auto", V100) == torch.float32
    assert resolve_dtype("float16", CPU) == torch.float16


def test_precision_flags_follow_dtype():
    assert precision_flags(torch.float32) == {"bf16": False, "fp16": False}
    assert precision_flags(torch.bfloat16) == {"bf16": True, "fp16": False}


def test_this_machine_is_detected_consistently():
    info = detect_device()
    assert info.kind in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        assert resolve_dtype("auto", info) == torch.float32
        assert resolve_attn_implementation("auto", info) is None  # transformers picks what the architecture supports


def test_auto_attention_loads_an_architecture_without_sdpa(tmp_path):
    """Gemma-2 has no SDPA kernel: 'auto' must leave the choice to transformers (eager there)."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from align.config.common import ModelConfig
    from align.models import load_causal_lm

    config = Gemma2Config(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
    )
    Gemma2ForCausalLM(config).save_pretrained(tmp_path / "gemma2")
    model = load_causal_lm(ModelConfig(name_or_path=str(tmp_path / "gemma2")))
    assert model.config._attn_implementation == "eager"
    assert load_causal_lm(ModelConfig(name_or_path=str(tmp_path / "gemma2"), attn_implementation="eager")) is not None
