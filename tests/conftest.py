"""Test-wide settings: offline hub, a shared cache for demo worlds, the tiny world fixture, and a
small annotation team on each kind of database."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Worlds are deterministic and versioned, so one cache across test runs is safe and fast.
# The README runs `.venv/bin/python -m pytest` without activating the venv: put the console scripts
# installed next to this interpreter (align, deepspeed) on PATH, as activation would.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("ALIGN_CACHE", str(Path(tempfile.gettempdir()) / "align-test-cache"))

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_world() -> Path:
    """The tiny demo world (seconds to build, cached): data files and a ~100k-parameter model."""
    from align.demo import build_world

    return build_world(size="tiny", seed=0, progress=False)


@pytest.fixture(params=["sqlite", "postgres"])
def team_store(request, tmp_path):
    """An annotation store with alice and bob (annotate_db.PASSWORD) and 6 items of 3 responses,
    on SQLite and on PostgreSQL (skipped where no server runs)."""
    from annotate_db import PASSWORD, fresh_db

    from annotation_ui.store import Store
    from annotation_ui.testing import sample_items

    store = Store(fresh_db(request.param, tmp_path), quota=2)
    for name in ("alice", "bob"):
        store.add_annotator(name, PASSWORD)
    store.add_items(sample_items(6))
    yield store
    store.close()


def tiny_llama(vocab_size: int, pad: int, eos: int, seed: int = 0):
    """A 2-layer, 16-wide random Llama (eval mode) for generation and scoring tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=pad,
        eos_token_id=eos,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config).eval()
