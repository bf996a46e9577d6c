"""`align export RUN_DIR --format gguf`: a run (or any model folder, or a LoRA run, merged
first) to a GGUF file and an Ollama Modelfile beside it. The run dir is only read."""

from __future__ import annotations

import json
from pathlib import Path

from align.errors import AlignInputError
from align.gguf.write import MODELFILE, export_gguf, ollama_modelfile


def export_run(source: str, out: Path, dtype: str = "f16", overwrite: bool = False) -> tuple[Path, Path]:
    """(gguf file, Modelfile) written from `source` (a run dir, final/, model folder or .gguf)."""
    from align.adapters import is_adapter_run
    from align.config.common import ModelConfig
    from align.models import is_peft_adapter, load_causal_lm, load_tokenizer, resolve_model_path

    out = Path(out)
    if out.suffix.lower() != ".gguf":
        raise AlignInputError(f"--out {out}: give a file name ending in .gguf")
    if out.exists() and not overwrite:
        raise AlignInputError(f"{out} already exists; pass --overwrite to replace it (nothing was written)")
    path = resolve_model_path(source)
    if is_adapter_run(path):
        raise AlignInputError(
            f"{path} holds bottleneck adapters (extra layers llama.cpp does not have); export a full, partial or "
            "LoRA run"
        )
    if is_peft_adapter(path):
        peft_type = json.loads((Path(path) / "adapter_config.json").read_text()).get("peft_type")
        if peft_type != "LORA":
            raise AlignInputError(
                f"{path} holds a {peft_type} adapter, which cannot be folded into the weights; export a full, "
                "partial or LoRA run"
            )
    config = ModelConfig(name_or_path=path, dtype="float32")
    model = load_causal_lm(config)
    if is_peft_adapter(path):
        model = model.merge_and_unload()  # LoRA folded in: llama.cpp reads plain weights
    tokenizer = load_tokenizer(config, model_path=path)
    export_gguf(model.eval(), tokenizer, out, dtype=dtype, name=f"{model.config.model_type} {Path(source).name}")
    modelfile = out.with_name(f"{out.stem}.{MODELFILE}")  # one per export, so several can share a folder
    modelfile.write_text(ollama_modelfile(out.name, tokenizer), encoding="utf-8")
    from align.model_card import write_export_card

    write_export_card(source, out, modelfile, dtype)
    return out, modelfile
