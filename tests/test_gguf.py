"""GGUF in and out on tiny random models of the exportable architectures (built here, on the tiny
world's byte-level BPE tokenizer): export round trips within stated tolerances, every stage
runs from a .gguf path, and a bad file, an unsupported architecture or an existing output is
one clear error (exit 2) that leaves files as they were."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import stages.dpo
import stages.ppo
import stages.reward
import stages.sft
from align.cli.common import build_config
from align.config.common import ModelConfig
from align.errors import AlignInputError
from align.gguf.export import export_run
from align.models import load_causal_lm, load_tokenizer

pytestmark = pytest.mark.heavy
TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny"
# 64 wide: q8_0 packs rows in blocks of 32 values; 4 query heads over 2 key/value heads (GQA), so
# the rotary permutation of k is tested with fewer heads than q.
SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}
CLASSES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
}
TEXTS = ["What is 2 + 3?", "The quick brown fox, 123 times.", "Sort: pear apple fig"]


@pytest.fixture(scope="module")
def tokenizer(tiny_world):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_world / "model")


def build(kind: str, folder: Path, tokenizer, tied: bool = False) -> Path:
    import transformers

    config_name, model_name = CLASSES[kind]
    ids = {
        "vocab_size": len(tokenizer) + 12,  # spare embedding rows, as real models pad their vocabulary
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": tied,
    }
    torch.manual_seed(0)
    model = getattr(transformers, model_name)(getattr(transformers, config_name)(**SHAPE, **ids))
    if kind == "qwen2":  # Qwen2's q/k/v biases start at zero: make them count in the comparison
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                torch.nn.init.normal_(param, std=0.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def read_back(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def max_logit_diff(a, b, ids: torch.Tensor) -> float:
    with torch.no_grad():
        return (a(ids).logits - b(ids).logits).abs().max().item()


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_export_round_trip(kind, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    source = build(kind, tmp_path / kind, tokenizer, tied=kind == "llama")
    original = AutoModelForCausalLM.from_pretrained(source).eval()
    source_tokenizer = load_tokenizer(ModelConfig(name_or_path=str(source)))  # as align reads the folder
    ids = torch.tensor([tokenizer("What is 2 + 3? Assistant: 5").input_ids])
    tolerance = {"f32": 1e-4, "f16": 2e-2, "q8_0": 0.15}  # q8_0: README states the measured figures
    for dtype, limit in tolerance.items():
        out, modelfile = export_run(str(source), tmp_path / f"{kind}-{dtype}.gguf", dtype=dtype)
        loaded, loaded_tokenizer = read_back(out)
        # llama.cpp writes Mistral as `llama`; transformers reads it back as a Llama (the same computation)
        assert type(loaded).__name__ == type(original).__name__.replace("Mistral", "Llama"), dtype
        diff = max_logit_diff(original, loaded, ids)
        assert diff <= limit, (kind, dtype, diff)
        if dtype == "f32":
            for text in TEXTS:  # same ids from the file's tokenizer, same greedy continuation
                assert loaded_tokenizer(text).input_ids == source_tokenizer(text).input_ids, text
                prompt = torch.tensor([tokenizer(text).input_ids])
                kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
                assert torch.equal(original.generate(prompt, **kwargs), loaded.generate(prompt, **kwargs)), text
            assert loaded_tokenizer.chat_template == tokenizer.chat_template
            assert loaded_tokenizer.eos_token == tokenizer.eos_token
        if dtype == "f16":
            assert diff > 0  # the matrices really were rounded
        text = modelfile.read_text()
        assert text.startswith(f"FROM ./{out.name}\n") and f'PARAMETER stop "{tokenizer.eos_token}"' in text
        assert "{{ .Prompt }}" in text  # the demo chat template, rendered around Ollama's placeholders


def test_stages_run_from_a_gguf_file_and_a_lora_run_exports_merged(tiny_world, tokenizer, tmp_path):
    gguf_file, modelfile = export_run(str(build("llama", tmp_path / "src", tokenizer)), tmp_path / "g" / "base.gguf", "f32")  # fmt: skip
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "g" / "base.README.md")  # the export's card, beside it
    assert card.data.library_name == "gguf" and card.data.tags == ["align", "gguf", "f32"]
    assert f"ollama create base -f {modelfile.name}" in card.text and "llama-cli -m base.gguf" in card.text

    def config(stage: str, *overrides: str):
        return build_config(stage, TINY / f"{stage}.yaml", [*overrides, "output.report_to=[none]"])

    sft = stages.sft.run(
        config(
            "sft",
            f"model.name_or_path={gguf_file}",
            "training.max_steps=2",
            "data.max_samples=8",
            "eval.max_examples=2",
            "eval.compare_base=false",
            "training.save_steps=null",
            f"output.output_dir={tmp_path / 'sft'}",
        )
    )
    final = sft.run_dir / "final"
    assert (final / "adapter_config.json").is_file() and not list(final.glob("*.gguf"))
    # the folder + file name form, as a reward backbone
    reward = stages.reward.run(
        config(
            "reward",
            f"model.name_or_path={gguf_file.parent}",
            f"model.gguf_file={gguf_file.name}",
            "training.max_steps=2",
            "data.max_samples=16",
            "eval.compare_untrained=false",
            f"output.output_dir={tmp_path / 'rm'}",
        )
    )
    assert (reward.run_dir / "final" / "model.safetensors").is_file()
    ppo = stages.ppo.run(
        config(
            "ppo",
            f"policy.name_or_path={gguf_file}",
            f"reward_model={reward.run_dir}",
            "advantage.estimator=grpo",
            "rollout.samples_per_prompt=2",
            "schedule.steps=1",
            "eval.max_prompts=2",
            f"output.output_dir={tmp_path / 'ppo'}",
        )
    )
    assert (ppo.run_dir / "final" / "config.json").is_file()
    dpo = stages.dpo.run(
        config(
            "dpo",
            f"model.name_or_path={gguf_file}",
            "training.max_steps=1",
            "eval.max_prompts=2",
            f"output.output_dir={tmp_path / 'dpo'}",
        )
    )
    assert (dpo.run_dir / "final").is_dir()

    from align.config.annotate import GenerateConfig
    from align.config.rag import GenerationConfig
    from align.rag.generate import Generator
    from annotation_ui.generate import generate_items

    model_config = ModelConfig(name_or_path=str(gguf_file))
    items = generate_items(
        load_causal_lm(model_config),
        load_tokenizer(model_config),
        [{"prompt": "What is 2 + 3?"}],
        GenerateConfig(k=2, max_new_tokens=4, max_rounds=1),
        "m",
        progress=False,
    )
    assert items.prompts == 1
    assert len(Generator(model_config, GenerationConfig(max_new_tokens=4)).generate(["Question?"])) == 1

    # the LoRA run exports with its adapter folded in: the file's logits are the merged model's
    merged = load_causal_lm(ModelConfig(name_or_path=str(sft.run_dir))).merge_and_unload().eval()
    out, _ = export_run(str(sft.run_dir), tmp_path / "sft.gguf", "f32")
    base = load_causal_lm(ModelConfig(name_or_path=str(gguf_file))).eval()
    ids = torch.tensor([tokenizer("What is 2 + 3?").input_ids])
    assert max_logit_diff(merged, read_back(out)[0], ids) <= 1e-4
    assert max_logit_diff(merged, base, ids) > 1e-3  # and the adapter did change the model


def run_align(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "align", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", **env},
    )


def test_bad_gguf_files_and_exports_exit_2_and_touch_nothing(tokenizer, tmp_path):
    import gguf

    good, _ = export_run(str(build("llama", tmp_path / "src", tokenizer)), tmp_path / "good.gguf", "f16")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(good.read_bytes()[:5000])
    other = tmp_path / "rwkv.gguf"  # an architecture transformers cannot read
    writer = gguf.GGUFWriter(str(other), "rwkv6")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", torch.zeros(4, 4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    sft = str(TINY / "sft.yaml")
    cases = [
        (["sft", "--config", sft, f"model.name_or_path={truncated}"], ["truncated.gguf", "not a readable GGUF"]),
        (["sft", "--config", sft, f"model.name_or_path={other}"], ["rwkv6", "readable architectures", "llama"]),
        (["sft", "--config", sft, f"model.name_or_path={tmp_path / 'missing.gguf'}"], ["missing.gguf"]),
        (["export", str(tmp_path / "src"), "--out", str(good)], ["already exists", "--overwrite"]),
        (["export", str(tmp_path / "src"), "--out", str(tmp_path / "x.gguf"), "--dtype", "q4"], ["q8_0"]),
    ]
    before = good.read_bytes()
    for args, words in cases:
        out = run_align(*args)
        assert out.returncode == 2, (args, out.stderr[-2000:])
        assert "Traceback" not in out.stderr
        for word in words:
            assert word in out.stderr, (args, word, out.stderr[-800:])
    assert good.read_bytes() == before

    gpt2 = tmp_path / "gpt2"
    import transformers

    transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, n_positions=64)
    ).save_pretrained(gpt2)
    tokenizer.save_pretrained(gpt2)
    with pytest.raises(AlignInputError, match="supports the architectures llama, mistral, qwen2"):
        export_run(str(gpt2), tmp_path / "gpt2.gguf")
    assert not (tmp_path / "gpt2.gguf").exists() and not (tmp_path / "gpt2.gguf.partial").exists()


def gguf_tensor(path: Path, name: str):
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    found = {t.name: t for t in reader.tensors}
    return reader, found.get(name)


def llama(tokenizer, **config):
    import transformers

    torch.manual_seed(0)
    ids = {"vocab_size": len(tokenizer) + 12, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**SHAPE, **ids, **config)).eval()


def test_llama3_rope_scaling_is_written_as_llama_cpp_reads_it(tokenizer, tmp_path):
    """Llama 3.1's scaling becomes rope_freqs: one factor per rotary frequency, by hand for head
    dim 16, base 10000, factor 8, low/high frequency factors 1 and 4, original context 64:
    wavelengths 2 pi 10000^(i/8) = 6.28, 19.87, 62.83, 198.7, ...; below 64/4 = 16: 1; above 64/1: 8;
    between, 1 / ((1 - s) / 8 + s) with s = (64 / wavelength - 1) / 3: 1.294 (s = 0.7404) and 7.667."""
    from align.gguf.write import export_gguf

    scaling = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}  # fmt: skip
    model = llama(tokenizer, rope_parameters=scaling)
    out = export_gguf(model, tokenizer, tmp_path / "scaled.gguf", dtype="f32")
    _, freqs = gguf_tensor(out, "rope_freqs.weight")
    assert freqs is not None and list(freqs.data.shape) == [8]
    assert [round(float(x), 3) for x in freqs.data] == [1.0, 1.294, 7.667, 8.0, 8.0, 8.0, 8.0, 8.0]
    linear = export_gguf(llama(tokenizer, rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}), tokenizer, tmp_path / "linear.gguf", dtype="f32")  # fmt: skip
    reader, none = gguf_tensor(linear, "rope_freqs.weight")
    assert none is None and reader.fields["llama.rope.scaling.factor"].contents() == 2.0
    assert reader.fields["llama.rope.scaling.type"].contents() == "linear"
    yarn = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64}
    with pytest.raises(AlignInputError, match="RoPE scaling 'yarn' is not written"):
        export_gguf(llama(tokenizer, rope_parameters=yarn), tokenizer, tmp_path / "yarn.gguf")
    assert not list(tmp_path.glob("yarn.gguf*"))


def test_query_and_key_biases_take_the_rotary_layout_of_their_weights(tokenizer, tmp_path):
    from align.gguf.write import _permute, export_gguf

    model = llama(tokenizer, attention_bias=True)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_()
    out = export_gguf(model, tokenizer, tmp_path / "biased.gguf", dtype="f32")
    layer = model.model.layers[0].self_attn
    _, q = gguf_tensor(out, "blk.0.attn_q.bias")
    _, k = gguf_tensor(out, "blk.0.attn_k.bias")
    _, v = gguf_tensor(out, "blk.0.attn_v.bias")
    assert torch.equal(torch.from_numpy(q.data.copy()), torch.from_numpy(_permute(layer.q_proj.bias.detach().numpy(), 4, 4)))  # fmt: skip
    assert torch.equal(torch.from_numpy(k.data.copy()), torch.from_numpy(_permute(layer.k_proj.bias.detach().numpy(), 4, 2)))  # fmt: skip
    assert torch.equal(torch.from_numpy(v.data.copy()), layer.v_proj.bias.detach())  # v has no rotary layout
    assert not torch.equal(torch.from_numpy(q.data.copy()), layer.q_proj.bias.detach())  # it really was permuted


def test_a_failed_export_leaves_no_partial_file_and_an_unknown_split_is_refused(tokenizer, tmp_path, monkeypatch):
    import align.gguf.write as write

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(write, "_write_tensors", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write.export_gguf(llama(tokenizer), tokenizer, tmp_path / "m.gguf")
    assert list(tmp_path.iterdir()) == []
    odd = {"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[a-z]+"}, "behavior": "Isolated"}}
    with pytest.raises(AlignInputError, match="pre-tokenizer llama.cpp would not reproduce"):
        write._pre_tokenizer_name(odd)
    assert write._pre_tokenizer_name({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False}}) == "gpt-2"


def test_a_gguf_file_is_read_in_the_dtype_its_weights_load_in(tokenizer, tmp_path, monkeypatch):
    """model.dtype bfloat16 converts a .gguf into bfloat16 safetensors (half the disk and memory of
    float32, e.g. a 7B Q4 file: ~14 GB instead of ~28 GB); float32 stays the default on CPU; each
    dtype has its own cached folder, and a caller that only wants the tokenizer reuses either."""
    from safetensors import safe_open

    from align.gguf.read import gguf_folder
    from align.models import load_causal_lm

    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    gguf_file, _ = export_run(str(build("llama", tmp_path / "src", tokenizer)), tmp_path / "m.gguf", "f16")

    def stored(folder):
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            return {f.get_slice(name).get_dtype() for name in f.keys()}

    half = load_causal_lm(ModelConfig(name_or_path=str(gguf_file), dtype="bfloat16"))
    (converted,) = (tmp_path / "cache" / "gguf").iterdir()
    assert converted.name.endswith("-bfloat16") and stored(converted) == {"BF16"}
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert gguf_folder(gguf_file) == converted  # the tokenizer's caller: any conversion made
    full = load_causal_lm(ModelConfig(name_or_path=str(gguf_file)))  # dtype auto: float32 on CPU
    assert stored(gguf_folder(gguf_file, "float32")) == {"F32"} and len(list(converted.parent.iterdir())) == 2
    ids = torch.tensor([tokenizer("What is 2 + 3?").input_ids])
    with torch.no_grad():
        assert torch.allclose(half(ids).logits.float(), full(ids).logits, atol=0.1)
    assert sum(p.numel() * p.element_size() for p in half.parameters()) * 2 == sum(
        p.numel() * p.element_size() for p in full.parameters()
    )
