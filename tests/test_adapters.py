"""Bottleneck adapters: the step-0 output is unchanged in every placement, only adapter
parameters train, a deep copy (PPO's reference) is independent, saved adapters reload, and
bad settings say what to change. Through `align sft` on the tiny world: each placement trains,
the base stays bit-identical, and the run feeds PPO and `align eval`."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import tiny_llama
from test_sft_modes import base_state, changed, run_mode

from align.adapters import ADAPTER_FILE, WEIGHTS_FILE, add_adapters, is_adapter_key, restore_adapters
from align.config.common import AdapterSettings, ModelConfig, UpdateConfig
from align.errors import AlignInputError
from align.models import load_causal_lm
from align.peft_builders import apply_update_mode

IDS = torch.tensor([[5, 6, 7, 8, 9]])


@pytest.mark.parametrize("placement", ["sequential", "parallel", "hybrid"])
def test_fresh_adapters_change_nothing_then_train(placement):
    model = tiny_llama(vocab_size=40, pad=0, eos=2)
    before = model(IDS).logits
    names = add_adapters(model, AdapterSettings(placement=placement, reduction_factor=4, layer_norm=True))
    per_block = {"sequential": 2, "parallel": 2, "hybrid": 4}[placement]  # attention + feed-forward by default
    assert len({n.rsplit(".", 2)[0] for n in names}) == 2 * per_block  # 2 blocks
    assert torch.equal(model(IDS).logits, before)  # zero-initialised up-projection: identical logits
    for name, module in model.named_modules():  # a non-zero adapter changes the output
        if name.endswith("feed_forward_" + ("parallel" if placement == "parallel" else "sequential")):
            torch.nn.init.normal_(module.up.weight)
    assert not torch.allclose(model(IDS).logits, before)


def test_only_adapters_train_and_a_deep_copy_is_independent():
    model = tiny_llama(vocab_size=40, pad=0, eos=2)
    model = apply_update_mode(model, UpdateConfig(mode="adapter", adapter={"bottleneck_size": 4}))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(is_adapter_key(n) for n in trainable)
    reference = copy.deepcopy(model).requires_grad_(False)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not is_adapter_key(k)}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        loss = model(IDS, labels=IDS).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())  # frozen: bit-identical
    assert not torch.allclose(model(IDS).logits, reference(IDS).logits)  # the copy kept its own (zero) adapters
    assert torch.equal(reference(IDS).logits, tiny_llama(vocab_size=40, pad=0, eos=2)(IDS).logits)


def test_saved_whole_model_reloads_with_its_adapters(tmp_path):
    model = tiny_llama(vocab_size=40, pad=0, eos=2)
    add_adapters(model, AdapterSettings(bottleneck_size=3, placement="hybrid"))
    for name, param in model.named_parameters():
        if is_adapter_key(name):
            torch.nn.init.normal_(param)
    model.save_pretrained(tmp_path / "whole")
    loaded = load_causal_lm(ModelConfig(name_or_path=str(tmp_path / "whole")))
    assert torch.allclose(loaded(IDS).logits, model(IDS).logits)


def test_bad_adapter_settings_name_the_fix():
    model = tiny_llama(vocab_size=40, pad=0, eos=2)
    with pytest.raises(AlignInputError, match="leaves a bottleneck of 0 units for hidden size 16"):
        add_adapters(model, AdapterSettings(reduction_factor=32))
    del model.model.layers[0].mlp  # an architecture without a feed-forward sub-layer here
    with pytest.raises(AlignInputError, match="has no feed_forward sub-layer.*update.adapter.location"):
        add_adapters(model, AdapterSettings(bottleneck_size=2))
    assert not any(is_adapter_key(n) for n, _ in model.named_parameters())  # checked before anything changed
    with pytest.raises(ValueError, match="bottleneck adapters on a 4-bit base are not supported"):
        UpdateConfig(mode="qlora", adapter={"bottleneck_size": 4})


@pytest.mark.parametrize("placement", ["sequential", "parallel", "hybrid"])
def test_sft_adapter_run_trains_only_adapters(tiny_world, tmp_path, placement):
    before = base_state(tiny_world)
    update = {"mode": "adapter", "adapter": {"placement": placement, "reduction_factor": 4}}
    result = run_mode(tiny_world, tmp_path / "run", update)
    final = result.run_dir / "final"
    assert (final / ADAPTER_FILE).is_file() and (final / WEIGHTS_FILE).is_file()
    assert not (final / "model.safetensors").exists()  # the adapters alone are saved
    model = load_causal_lm(ModelConfig(name_or_path=str(result.run_dir)))
    after = model.state_dict()
    adapters = {k for k in after if is_adapter_key(k)}
    assert not changed(before, {k: after[k] for k in before})  # base: bit-identical
    assert any(after[k].abs().sum() > 0 for k in adapters if ".up." in k)  # up-projections left zero: trained
    plain = load_causal_lm(ModelConfig(name_or_path=str(tiny_world / "model")))
    restore_adapters(plain, final)
    assert torch.equal(plain(IDS).logits, model(IDS).logits)


def test_sft_merge_of_an_adapter_run_says_why_not(tiny_world, tmp_path):
    from align.sft.export import merge_adapter

    result = run_mode(tiny_world, tmp_path / "run", {"mode": "adapter"})
    with pytest.raises(AlignInputError, match="cannot be folded into the weights"):
        merge_adapter(result.run_dir)


@pytest.mark.parametrize("task_type", ["CAUSAL_LM", "SEQ_CLS"])
def test_feature_extraction_trains_only_the_head(tiny_world, task_type):
    if task_type == "CAUSAL_LM":
        model = load_causal_lm(ModelConfig(name_or_path=str(tiny_world / "model")))
    else:
        from align.reward.model import load_backbone

        model, _, _ = load_backbone(ModelConfig(name_or_path=str(tiny_world / "model")))
    embeddings = model.get_input_embeddings().weight
    model = apply_update_mode(model, UpdateConfig(mode="feature_extraction"), task_type)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == ({"lm_head.weight"} if task_type == "CAUSAL_LM" else {"score.weight"})
    assert not model.get_input_embeddings().weight.requires_grad and model.get_input_embeddings().weight is embeddings


@pytest.mark.heavy
def test_adapter_run_feeds_reward_ppo_and_eval(tiny_world, repo_root, tmp_path):
    """An SFT adapter run as a reward backbone (feature extraction), as the PPO policy (LoRA and
    full updates), and as a system of `align eval`; PPO's final/ reloads with its adapters."""
    import json

    import stages.eval
    import stages.ppo
    import stages.reward
    from align.cli.common import build_config

    sft = run_mode(tiny_world, tmp_path / "sft", {"mode": "adapter", "adapter": {"placement": "parallel"}}).run_dir
    reward = stages.reward.run(
        build_config(
            "reward",
            repo_root / "configs/tiny/reward.yaml",
            [
                f"model.name_or_path={sft}",
                "update.mode=feature_extraction",
                "training.max_steps=4",
                f"output.output_dir={tmp_path / 'reward'}",
                "output.report_to=[none]",
            ],
        )
    ).run_dir
    for mode in ("lora", "full"):
        stages.ppo.run(
            build_config(
                "ppo",
                repo_root / "configs/tiny/ppo.yaml",
                [
                    f"policy.name_or_path={sft}",
                    f"reward_model={reward}",
                    f"update.mode={mode}",
                    "schedule.steps=2",
                    "eval.max_prompts=4",
                    f"output.output_dir={tmp_path / ('ppo-' + mode)}",
                ],
            )
        )
        ppo_model = load_causal_lm(ModelConfig(name_or_path=str(tmp_path / f"ppo-{mode}")))
        assert any(is_adapter_key(n) for n in ppo_model.state_dict())
    figures = json.loads((tmp_path / "ppo-full" / "eval.json").read_text())
    assert figures["prompts"] == 4 and figures["ppo"]["kl_to_reference"] >= -1e-3
    result = stages.eval.run(
        build_config(
            "eval",
            repo_root / "configs/tiny/eval.yaml",
            [
                f"systems.sft.model={sft}",
                "systems.sft.optional=false",
                f"systems.ppo.model={tmp_path / 'ppo-lora'}",
                f"output.output_dir={tmp_path / 'eval'}",
            ],
        )
    )
    table = json.loads((result.run_dir / "eval.json").read_text())["parts"]
    assert {"sft", "ppo"} <= set(table["seen"])


def test_sft_feature_extraction_run_changes_only_the_head(tiny_world, tmp_path):
    before = base_state(tiny_world)
    result = run_mode(tiny_world, tmp_path / "run", {"mode": "feature_extraction"})
    model = load_causal_lm(ModelConfig(name_or_path=str(result.run_dir)))
    after = model.state_dict()
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight  # untied on save and load
    assert changed(before, {k: after[k] for k in before}) == {"lm_head.weight"}  # embeddings: bit-identical


def test_reward_model_with_adapters_reloads_through_the_scorer(tiny_world, repo_root, tmp_path):
    import stages.reward
    from align.cli.common import build_config
    from align.reward.scorer import RewardScorer

    result = stages.reward.run(
        build_config(
            "reward",
            repo_root / "configs/tiny/reward.yaml",
            [
                "update.mode=adapter",
                "update.adapter.bottleneck_size=4",
                "training.max_steps=3",
                "eval.compare_untrained=false",
                f"output.output_dir={tmp_path / 'rm'}",
                "output.report_to=[none]",
            ],
        )
    )
    scorer = RewardScorer(result.run_dir)
    ups = {k: v for k, v in scorer.model.state_dict().items() if is_adapter_key(k) and ".up." in k}
    assert ups and any(v.abs().sum() > 0 for v in ups.values())  # trained (they start at zero), saved, restored
    prompts, responses = ["What is 2 + 3?", "Sort: b a"], ["5", "a b"]
    with_adapters = scorer.score(prompts, responses)
    for module in scorer.model.modules():  # the same model with the adapters' output zeroed
        if module.__class__.__name__ == "Bottleneck":
            torch.nn.init.zeros_(module.up.weight)
            torch.nn.init.zeros_(module.up.bias)
    assert not torch.allclose(with_adapters, scorer.score(prompts, responses))
    assert json.loads((result.run_dir / "eval.json").read_text())["models"]["trained"]["test"]["pairs"] > 0
