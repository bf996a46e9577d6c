"""The default world's shipped base model: current, used where it fits, never where it does not.

Builds the full demo world with the shipped weights (a few seconds: no pre-training) and, with
pre-training replaced by a stand-in, checks which path a build takes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from align.cli import main
from align.demo import build as build_module
from align.demo import build_world, fact_completion_rate, pretrained
from align.demo.model import make_config

SHIPPED = pretrained.shipped_dir("demo", 0)


@pytest.fixture(autouse=True)
def offline_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def stand_in_pretraining(monkeypatch):
    """Pre-training replaced by a freshly initialised model; records each call."""
    calls = []

    def fake_build_model(tokenizer, lines, spec, seed, progress):
        calls.append(seed)
        return LlamaForCausalLM(make_config(spec, tokenizer)), {"stand_in": True}

    monkeypatch.setattr(build_module, "build_model", fake_build_model)
    return calls


@pytest.fixture(scope="module")
def shipped_world(tmp_path_factory) -> Path:
    return build_world("demo", 0, root=tmp_path_factory.mktemp("w") / "demo", progress=False)


def align_demo(*args: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", *args])
    assert exit_.value.code == 0


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shipped_weights_fit_todays_default_world(shipped_world):
    """Fails when the world's text, tokenizer or model spec changed without re-shipping:
    run `python bench/world_build.py --ship` (pre-trains, ~10 min) and commit the weights."""
    manifest = json.loads((shipped_world / "world.json").read_text())
    origin = json.loads((SHIPPED / "origin.json").read_text())
    assert manifest["model_fingerprint"] == origin["fingerprint"]
    assert manifest["pretrain"]["source"] == "shipped"
    assert manifest["pretrain"]["steps"] == origin["pretrain"]["steps"] == 3000


def test_the_world_saves_the_shipped_weights_unchanged_and_they_load(shipped_world):
    assert sha256(shipped_world / "model" / "model.safetensors") == sha256(SHIPPED / "model.safetensors")
    model = AutoModelForCausalLM.from_pretrained(shipped_world / "model")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied


def test_shipped_base_model_knows_the_world(shipped_world):
    """Real pre-trained weights, not an initialisation: the seen facts are completed."""
    assert fact_completion_rate(shipped_world, 100) > 0.9


def test_a_changed_world_is_pre_trained_not_given_stale_weights(monkeypatch, stand_in_pretraining, tmp_path, caplog):
    origin = json.loads((SHIPPED / "origin.json").read_text())
    stale = {**origin, "fingerprint": {**origin["fingerprint"], "tokenizer_sha256": "0" * 64}}
    monkeypatch.setattr(pretrained, "read_origin", lambda size, seed: stale)
    with caplog.at_level(logging.WARNING, logger="align.demo.pretrained"):
        root = build_world("demo", 0, root=tmp_path / "w", progress=False)
    assert stand_in_pretraining == [0]
    assert "tokenizer_sha256 differ" in caplog.text
    assert json.loads((root / "world.json").read_text())["pretrain"] == {"stand_in": True}


def test_other_seeds_have_no_shipped_weights(stand_in_pretraining, tmp_path):
    build_world("demo", 1, root=tmp_path / "w", progress=False)
    assert stand_in_pretraining == [1]


def test_align_demo_pretrain_trains_even_where_weights_ship(stand_in_pretraining, shipped_world, tmp_path):
    out = tmp_path / "w"
    align_demo("--out", str(out))
    assert stand_in_pretraining == []  # shipped
    align_demo("--out", str(out), "--pretrain")  # rebuilds the cached world
    assert stand_in_pretraining == [0]
    assert json.loads((out / "world.json").read_text())["pretrain"] == {"stand_in": True}


def test_ship_refuses_a_world_that_loaded_the_shipped_weights(shipped_world):
    with pytest.raises(ValueError, match="--pretrain"):
        pretrained.ship(shipped_world)


def test_ship_copies_weights_figures_and_fingerprint(monkeypatch, stand_in_pretraining, tmp_path):
    root = build_world("demo", 0, root=tmp_path / "w", progress=False, pretrain=True)
    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path / "package")
    target = pretrained.ship(root, trained_on="test machine")
    origin = json.loads((target / "origin.json").read_text())
    manifest = json.loads((root / "world.json").read_text())
    assert origin["fingerprint"] == manifest["model_fingerprint"]
    assert origin["pretrain"] == {"stand_in": True} and origin["trained_on"] == "test machine"
    assert sha256(target / "model.safetensors") == sha256(root / "model" / "model.safetensors")
    # and a build now loads exactly those weights
    again = build_world("demo", 0, root=tmp_path / "again", progress=False)
    assert stand_in_pretraining == [0]
    a = AutoModelForCausalLM.from_pretrained(root / "model").state_dict()
    b = AutoModelForCausalLM.from_pretrained(again / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
