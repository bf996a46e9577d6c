"""final/ of an SFT run: save it so any later stage can load it, and merge a LoRA adapter.

final/ holds either a full model (config.json + weights) or a PEFT adapter whose
adapter_config.json names the base model; both carry the tokenizer (with its chat
template) and align.json saying which it is. `align.models.load_causal_lm` loads either.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from align.adapters import is_adapter_run
from align.errors import AlignInputError
from align.models import adapter_base, is_peft_adapter, resolve_model_path
from align.rundir import atomic_write_json

MERGED = "final-merged"


def write_final_info(final_dir: Path, base_model: str, update_mode: str) -> None:
    atomic_write_json(
        final_dir / "align.json",
        {
            "stage": "sft",
            "base_model": base_model,
            "update_mode": update_mode,
            "adapter": is_peft_adapter(str(final_dir)),
        },
    )


def merge_adapter(source: str | Path, out_dir: Path | None = None) -> Path:
    """Fold a LoRA adapter into its base weights and save a plain full model (+ tokenizer).

    `source` is a run dir or an adapter dir; out_dir defaults to <run dir>/final-merged.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = resolve_model_path(str(source))
    if not Path(adapter).is_dir():
        raise AlignInputError(f"no such run or adapter directory: {source}")
    if is_adapter_run(adapter):
        raise AlignInputError(
            f"{adapter} holds bottleneck adapters, which have a non-linearity and cannot be folded into the weights; "
            "later stages (reward, ppo, eval, rag) load the run dir as it is"
        )
    if not is_peft_adapter(adapter):
        raise AlignInputError(
            f"{adapter} is not a PEFT adapter (no adapter_config.json): a full-model run needs no merge"
        )
    peft_type = json.loads((Path(adapter) / "adapter_config.json").read_text()).get("peft_type")
    if peft_type != "LORA":
        raise AlignInputError(
            f"{adapter} holds a {peft_type} adapter; only LoRA adapters can be merged into the weights"
        )
    out_dir = Path(out_dir) if out_dir else Path(adapter).parent / MERGED
    if out_dir.exists() and any(out_dir.iterdir()):
        raise AlignInputError(
            f"{out_dir} already exists and is not empty; move it away first (nothing was overwritten)"
        )
    base = AutoModelForCausalLM.from_pretrained(adapter_base(adapter))
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a crashed merge
    merged.save_pretrained(tmp)
    tokenizer_source = adapter if (Path(adapter) / "tokenizer_config.json").exists() else adapter_base(adapter)
    AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(tmp)
    if out_dir.exists():
        out_dir.rmdir()  # empty, checked above
    tmp.replace(out_dir)
    return out_dir
