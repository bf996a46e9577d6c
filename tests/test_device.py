"""Device detection decides the weights' dtype, TRL's precision flags and the compute precision:
CPU weights stay fp32; bf16 autocast only where the hardware does bf16 natively."""

import pytest
import torch

from align import device as device_module
from align import precision as precision_module
from align.device import (
    DeviceInfo,
    cpu_has_native_bf16,
    detect_device,
    precision_flags,
    resolve_attn_implementation,
    resolve_dtype,
)
from align.precision import autocast_forward, precision_request, precision_scope, resolve_precision

CPU = DeviceInfo(kind="cpu", name="cpu", count=1, bf16=False, fp16=False)
BF16_CPU = DeviceInfo(kind="cpu", name="Xeon", count=1, bf16=True, fp16=False)
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


@pytest.mark.parametrize(
    "flags, native",
    [
        ({"avx512_f": True, "avx512_bw": True, "avx2": True}, False),  # AVX-512 alone: oneDNN would emulate bf16
        ({"avx512_f": True, "avx512_bf16": True}, True),
        ({"amx_tile": True, "amx_bf16": True}, True),
        ({"architecture": "arm64", "neon": True, "bf16": True}, True),
        ({"architecture": "arm64", "neon": True}, False),
        ({}, False),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch, flags, native):
    monkeypatch.setattr(device_module, "cpu_capabilities", lambda: flags)
    assert cpu_has_native_bf16() is native
    if not torch.cuda.is_available():
        info = detect_device()
        assert info.bf16 is native
        assert resolve_precision("auto", info) == ("bf16" if native else "fp32")
        assert resolve_dtype("auto", info) == torch.float32  # master weights stay float32 on every CPU


def test_precision_choice():
    assert resolve_precision("auto", CPU) == "fp32"  # no emulated bf16 by default
    assert resolve_precision("auto", BF16_CPU) == "bf16"
    assert resolve_precision("fp32", BF16_CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"  # asked for explicitly: honoured (and announced as emulated)
    assert resolve_precision("auto", H100) == "bf16"
    assert resolve_precision("auto", V100) == "fp32"
    assert resolve_precision("auto", CPU, weights=torch.bfloat16) == "bf16"
    assert resolve_precision("fp32", H100, weights=torch.bfloat16) == "bf16"  # bf16 weights compute in bf16
    assert resolve_precision("auto", DeviceInfo("mps", "Apple MPS", 1, False, True)) == "fp32"


def test_only_the_forward_of_a_loaded_model_runs_in_bf16():
    """In a bf16 stage a wrapped model's forward autocasts (a nested fp32 stage turns it off); weight
    math outside a forward, e.g. merging LoRA into the weights, stays float32; the signature the HF
    Trainer reads is the model's own."""
    import copy
    import inspect

    linear = autocast_forward(torch.nn.Linear(4, 4))
    x = torch.randn(2, 4)
    assert "input" in inspect.signature(linear.forward).parameters
    with precision_scope("bf16", device=CPU):
        assert linear(x).dtype == torch.bfloat16
        assert copy.deepcopy(linear)(x).dtype == torch.bfloat16  # the copy runs its own weights
        assert (x @ linear.weight).dtype == torch.float32  # not a forward: exact
        with precision_scope("fp32", device=CPU):
            assert linear(x).dtype == torch.float32
    assert linear(x).dtype == torch.float32  # outside any stage
    twin = copy.deepcopy(linear)
    with torch.no_grad():
        twin.weight.zero_()
    assert not torch.equal(linear(x), twin(x))  # deepcopy rebinds forward to the copy's weights


def test_the_choice_is_printed_once(capsys):
    precision_module._ANNOUNCED.clear()
    for _ in range(3):
        with precision_scope("fp32", "auto", CPU):
            pass
    with precision_scope("bf16", "auto", CPU):
        pass
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "precision fp32: cpu (cpu) has no native bf16",
        "precision bf16 autocast on cpu (cpu): master weights and optimizer state float32; "
        "this device has no native bf16, so it is emulated and slower than fp32",
    ]


def test_a_stage_config_names_its_precision():
    from align.config.common import ModelConfig

    class Stage:  # the shapes stage configs have: model (sft, reward, dpo), policy (ppo), top-level (eval)
        def __init__(self, **kw):
            self.__dict__.update(kw)

    model = ModelConfig(name_or_path="m", precision="bf16", dtype="float32")
    assert precision_request(Stage(model=model)) == ("bf16", "float32")
    assert precision_request(Stage(policy=ModelConfig(name_or_path="m"), model=None)) == ("auto", "auto")
    assert precision_request(Stage(precision="fp32", dtype="auto")) == ("fp32", "auto")
    assert precision_request(Stage(model=None, precision=None)) == ("auto", "auto")  # a pipeline: each stage its own
    # DeepSpeed decides its own training precision; 'auto' does not autocast around its engine
    assert precision_request(Stage(model=ModelConfig(name_or_path="m"), deepspeed="z2.json")) == ("fp32", "auto")


def test_the_backbone_autocasts_when_a_trainer_bypasses_the_models_forward():
    """TRL's DPO swaps the model's forward for a fused output layer that calls the backbone itself."""
    from conftest import tiny_llama

    model = autocast_forward(tiny_llama(vocab_size=32, pad=0, eos=2))
    seen = []
    model.base_model.layers[0].self_attn.q_proj.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    with precision_scope("bf16", device=CPU):
        model.base_model(input_ids=torch.tensor([[3, 4, 5]]))  # the backbone alone, as TRL's fused head calls it
    model.base_model(input_ids=torch.tensor([[3, 4, 5]]))  # outside a stage
    assert seen == [torch.bfloat16, torch.float32]
