"""Every final model gets a model card in the hub's format: it parses with huggingface_hub's
ModelCard, its metadata names the base model, library, tags, data and the base's licence, and it
says how to reproduce and load the model."""

from __future__ import annotations

from huggingface_hub import ModelCard

from align.config import validate
from align.config.sft import SFTConfig
from align.model_card import write_model_card
from align.rundir import RunResult


def test_a_card_on_the_final_model_parses_and_inherits_the_licence(tmp_path):
    base = tmp_path / "base-model"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n# a base model\n")
    run = tmp_path / "sft-mine"
    (run / "final").mkdir(parents=True)
    (run / "final" / "adapter_config.json").write_text("{}")
    config = validate(
        SFTConfig, {"model": {"name_or_path": str(base)}, "data": {"train": "data:alpaca_en"}, "training": {"seed": 3}}
    )
    result = RunResult(run, {"train_loss": 1.25, "global_steps": 48}, {})
    path = write_model_card("sft", config, result)
    card = ModelCard.load(path)
    assert card.data.base_model == str(base) and card.data.license == "apache-2.0"
    assert card.data.library_name == "peft" and card.data.tags == ["align", "sft", "lora"]
    assert card.data.datasets == ["data:alpaca_en"] and card.data.pipeline_tag == "text-generation"
    text = card.text
    assert f"align sft --config {run / 'config.yaml'}" in text and "AutoModelForCausalLM.from_pretrained" in text
    assert "| train_loss | 1.25 |" in text and "- steps: 48" in text and "- seed: 3" in text


def test_no_final_model_no_card(tmp_path):
    config = validate(SFTConfig, {"model": {"name_or_path": "m"}, "data": {"train": "d.jsonl"}})
    assert write_model_card("sft", config, RunResult(tmp_path, {}, {})) is None
