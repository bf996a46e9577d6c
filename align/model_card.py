"""The model card (README.md in the hub's format) every final model of a stage gets: metadata a hub
reads (base model, library, tags, data, the base's licence where its own card says it), what was
done, what it changed in sentences and a table, the command that reproduces it, and how to load it.
Written with huggingface_hub's ModelCard, so the hub and its tools parse it as they parse theirs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from align.config.common import Section
from align.rundir import FINAL_DIR, RunResult

PIPELINE_TAG = {"reward": "text-classification"}
KEY_FIGURES = 12  # the table's rows: the stage's own figures, not every metric


def _get(config: Section, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def base_model(config: Section) -> str | None:
    return _get(config, "model.name_or_path") or _get(config, "policy.name_or_path")


def base_licence(base: str | None) -> str | None:
    """The licence a local base model's own card states (None when there is none to read)."""
    from huggingface_hub import ModelCard

    if not base:
        return None
    card = Path(base).expanduser() / "README.md"
    if not card.is_file():
        return None
    try:
        return ModelCard.load(card).data.license
    except Exception:  # a README that is not a card
        return None


def card_text(stage: str, config: Section, result: RunResult, sentences: list[str]) -> str:
    """The card's markdown, metadata first."""
    from huggingface_hub import ModelCardData

    final = result.run_dir / FINAL_DIR
    base = base_model(config)
    datasets = [d for d in (_get(config, "data.train"),) if d]
    method = _get(config, "advantage.estimator") or _get(config, "loss")
    mode = _get(config, "update.mode")
    adapter = (final / "adapter_config.json").is_file()
    data = ModelCardData(
        base_model=base,
        library_name="peft" if adapter else "transformers",
        license=base_licence(base),
        tags=[t for t in ("align", stage, method, mode) if t],
        datasets=datasets or None,
        pipeline_tag=PIPELINE_TAG.get(stage, "text-generation"),
    )
    done = [f"- stage: `align {stage}`" + (f" ({method})" if method else "")]
    if base:
        done.append(f"- from: `{base}`")
    if mode:
        done.append(f"- update mode: {mode}")
    if datasets:
        done.append(f"- data: `{datasets[0]}`")
    for key, words in (("global_steps", "steps"), ("train_examples", "training examples"), ("steps", "steps")):
        if key in result.metrics:
            done.append(f"- {words}: {result.metrics[key]:g}")
    seed = _get(config, "training.seed") if _get(config, "training.seed") is not None else _get(config, "schedule.seed")
    if seed is not None:
        done.append(f"- seed: {seed}")
    figures = [(k, v) for k, v in result.metrics.items() if isinstance(v, (int, float))][:KEY_FIGURES]
    table = "\n".join(["| figure | value |", "| --- | --- |", *(f"| {k} | {v:.4g} |" for k, v in figures)])
    loader = "AutoModelForSequenceClassification" if stage == "reward" else "AutoModelForCausalLM"
    body = f"""
# {result.run_dir.name}

Trained with align (`align {stage}`): the run dir holds its config, metrics and report.

## What was done

{chr(10).join(done)}

## What it changed

{" ".join(sentences) if sentences else "See eval.json in the run dir."}

{table}

## Reproduce

```bash
align {stage} --config {result.run_dir / "config.yaml"}
```

## Use it

```python
from transformers import AutoTokenizer, {loader}

tokenizer = AutoTokenizer.from_pretrained("{final}")
model = {loader}.from_pretrained("{final}")
```

For llama.cpp and Ollama: `align export {result.run_dir} --format gguf`.
"""
    return f"---\n{data.to_yaml()}\n---\n{body}"


def write_model_card(stage: str, config: Section, result: RunResult) -> Path | None:
    """README.md in the run's final/ (None when the stage saved no final model)."""
    from huggingface_hub import ModelCard

    from align.summary import stage_sentences

    final = result.run_dir / FINAL_DIR
    if not final.is_dir():
        return None
    card = ModelCard(card_text(stage, config, result, stage_sentences(stage, result)))
    path = final / "README.md"
    card.save(path)
    return path


def write_export_card(source: str, gguf: Path, modelfile: Path, dtype: str) -> Path:
    """`<name>.README.md` beside a GGUF export: what it is and how llama.cpp and Ollama run it."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        base_model=str(source), library_name="gguf", tags=["align", "gguf", dtype], license=base_licence(source)
    )
    body = f"""
# {gguf.stem}

`{source}` exported by `align export` to GGUF ({dtype}; a LoRA run's adapter folded into the weights).

## Run it

```bash
llama-cli -m {gguf.name} -cnv                      # llama.cpp, the chat template read from the file
ollama create {gguf.stem} -f {modelfile.name}      # Ollama, then: ollama run {gguf.stem}
```

## Reproduce

```bash
align export {source} --out {gguf.name} --dtype {dtype}
```
"""
    path = gguf.with_name(f"{gguf.stem}.README.md")
    ModelCard(f"---\n{data.to_yaml()}\n---\n{body}").save(path)
    return path
