"""Pre-trained base-model weights shipped with the package (the default world's only).

Pre-training the demo world's base model is ~10 minutes on 2 CPU cores, nearly all of a first
run's world build; a user of a real model downloads it instead. The demo world has no hub, so
its base model for the default world (size demo, seed 0, this WORLD_VERSION) ships here, with
an origin.json saying how it was trained and a fingerprint of what it was trained on: the model
spec, the pre-training text and the tokenizer. The weights are used only when a world being
built has that same fingerprint; any other world, a changed generator, or `align demo
--pretrain` pre-trains from scratch as before. Maintainers refresh them with
`python bench/world_build.py --ship` after changing the world (a test fails until they do).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
from dataclasses import asdict
from datetime import date
from pathlib import Path

from safetensors.torch import load_file
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from align.demo.model import make_config
from align.demo.spec import WORLD_VERSION, ModelSpec

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).parent / "pretrained"
WEIGHTS = "model.safetensors"
ORIGIN = "origin.json"


def shipped_dir(size: str, seed: int) -> Path:
    return SHIPPED / f"{size}-s{seed}-v{WORLD_VERSION}"


def fingerprint(spec: ModelSpec, pretraining_text: list[str], tokenizer_json: bytes) -> dict:
    """What the weights depend on: any change here makes shipped weights stale."""
    text = hashlib.sha256("\n".join(pretraining_text).encode("utf-8")).hexdigest()
    return {
        "model_spec": asdict(spec),
        "pretraining_text_sha256": text,
        "tokenizer_sha256": hashlib.sha256(tokenizer_json).hexdigest(),
    }


def read_origin(size: str, seed: int) -> dict | None:
    path = shipped_dir(size, seed) / ORIGIN
    if not path.is_file() or not (path.parent / WEIGHTS).is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def load_shipped(
    size: str, seed: int, expected: dict, spec: ModelSpec, tokenizer: PreTrainedTokenizerFast
) -> tuple[LlamaForCausalLM, dict] | None:
    """The shipped model and its pre-training figures, or None when none fits this world."""
    origin = read_origin(size, seed)
    if origin is None:
        return None
    if origin["fingerprint"] != expected:
        stale = sorted(k for k in expected if origin["fingerprint"].get(k) != expected[k])
        log.warning(
            "the shipped %s-s%d weights were trained on another world (%s differ): pre-training from scratch",
            size,
            seed,
            ", ".join(stale),
        )
        return None
    model = LlamaForCausalLM(make_config(spec, tokenizer))
    missing, unexpected = model.load_state_dict(load_file(shipped_dir(size, seed) / WEIGHTS), strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:  # the head is tied to the embeddings
        raise ValueError(f"shipped weights do not fit the model: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    stats = {**origin["pretrain"], "source": "shipped", "trained_on": origin["trained_on"]}
    return model, stats


def ship(world: Path, trained_on: str | None = None) -> Path:
    """Copy a freshly pre-trained world's weights, figures and fingerprint into the package (maintainers)."""
    manifest = json.loads((world / "world.json").read_text(encoding="utf-8"))
    if manifest["pretrain"].get("source") == "shipped":
        raise ValueError(f"{world} loaded the shipped weights; build it with --pretrain to ship new ones")
    target = shipped_dir(manifest["size"], manifest["seed"])
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(world / "model" / WEIGHTS, target / WEIGHTS)
    origin = {
        "size": manifest["size"],
        "seed": manifest["seed"],
        "version": manifest["version"],
        "trained_on": trained_on or f"{platform.machine()} {platform.processor() or 'cpu'}, {date.today()}",
        "pretrain": manifest["pretrain"],
        "fingerprint": manifest["model_fingerprint"],
    }
    (target / ORIGIN).write_text(json.dumps(origin, indent=2) + "\n", encoding="utf-8")
    return target
