"""Config pieces shared by every stage: model, data, update mode, training, DeepSpeed, output.

Each field is documented once, here, in its `description`; the docs site's config-key tables
are generated from them (align/config/reference.py). Values are validated when the YAML is loaded, so a bad value fails before any
model is touched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

INPUT_PATH = {"input_path": True}
"""Marks a field naming an input (file, folder, hub id): `check_input_paths` verifies it before a run."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ModelConfig(Section):
    name_or_path: str = Field(
        description="Hub id, local directory, an earlier run's dir or final/, a .gguf file, "
        "'models:<name>' (a model `align models pull` fetches), or 'demo:<size>/model'.",
        json_schema_extra=INPUT_PATH,
    )
    gguf_file: str | None = Field(
        None,
        description="The .gguf file's name inside the folder name_or_path (the same as giving the file's path).",
    )
    tokenizer: str | None = Field(None, description="Tokenizer id/path when it differs from the model.")
    chat_template: str | None = Field(
        None, description="Jinja chat template to use instead of the model's (or when it has none)."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="'auto' picks bfloat16 on a GPU that supports it, float32 on CPU."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="Arithmetic of every forward pass (training, generation, scoring, reference): 'auto' is bf16 "
        "autocast where the hardware does bf16 natively (a GPU that supports it; a CPU with AVX-512 BF16, AMX or "
        "ARM BF16), fp32 otherwise. Weights and optimizer state stay in `dtype`.",
    )
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = Field(
        "auto",
        description="'auto': flash attention when installed on CUDA, else the architecture's own default (sdpa where supported).",
    )
    trust_remote_code: bool = Field(False, description="Allow model code from the hub (off: safer).")

    @model_validator(mode="before")
    @classmethod
    def _fold_gguf_file(cls, data):
        """`name_or_path: folder` + `gguf_file: name` means the file's path: one field for the loaders to read."""
        if isinstance(data, dict) and data.get("gguf_file"):
            folder = str(data.get("name_or_path", "")).rstrip("/")
            data = {**data, "name_or_path": f"{folder}/{data['gguf_file']}" if folder else data["gguf_file"]}
            data["gguf_file"] = None
        return data


class DataConfig(Section):
    train: str = Field(
        description="Training data: .jsonl/.json/.csv/.parquet file, a folder, a datasets name, or 'demo:...'.",
        json_schema_extra=INPUT_PATH,
    )
    validation: str | None = Field(
        None,
        description="Validation data; if absent, `validation_fraction` of train is held out.",
        json_schema_extra=INPUT_PATH,
    )
    test: str | None = Field(None, description="Test data for the final evaluation.", json_schema_extra=INPUT_PATH)
    format: Literal["auto"] = Field(
        "auto", description="Record format; 'auto' detects it from the columns (each stage names its formats)."
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Rename columns to the expected names, e.g. {question: instruction}."
    )
    validation_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="Share of train held out when no validation file is given."
    )
    max_samples: int | None = Field(None, gt=0, description="Use at most this many training records (quick runs).")
    max_length: int = Field(
        512, gt=0, description="Longest tokenized example; longer ones are truncated or dropped (counted)."
    )


class LoraSettings(Section):
    r: int = Field(8, ge=1, description="LoRA rank.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="Module names to adapt; None = the architecture's attention+MLP projections; 'all-linear'."
    )


class PartialSettings(Section):
    trainable_layers: int = Field(
        2, ge=0, description="Train only the last N transformer blocks (plus the LM head/norm)."
    )
    trainable_modules: list[str] = Field(
        default_factory=list, description="Extra parameter-name substrings to train, e.g. ['embed_tokens']."
    )


class PromptSettings(Section):
    num_virtual_tokens: int = Field(16, ge=1, description="Virtual tokens for prompt/prefix tuning.")
    init_text: str | None = Field(None, description="Prompt tuning: initialise the virtual tokens from this text.")


class AdapterSettings(Section):
    """Bottleneck adapters (update.mode = adapter): down-projection, non-linearity, up-projection, residual."""

    reduction_factor: float = Field(16.0, gt=0, description="Bottleneck size = hidden size / reduction_factor.")
    bottleneck_size: int | None = Field(None, ge=1, description="Bottleneck units; overrides reduction_factor.")
    non_linearity: Literal["relu", "gelu", "silu", "tanh"] = Field("relu", description="Between the two projections.")
    placement: Literal["sequential", "parallel", "hybrid"] = Field(
        "sequential",
        description="After the sub-layer (reads its output), beside it (reads its input), or both.",
    )
    location: list[Literal["attention", "feed_forward"]] = Field(
        default_factory=lambda: ["attention", "feed_forward"],
        min_length=1,
        description="Which sub-layers of every block get an adapter (Houlsby: both; Pfeiffer: feed_forward).",
    )
    layer_norm: bool = Field(False, description="A layer norm on the adapter's input.")


class UpdateConfig(Section):
    mode: Literal[
        "full", "partial", "lora", "qlora", "adapter", "prompt_tuning", "prefix_tuning", "feature_extraction"
    ] = Field(
        "lora",
        description="Which parameters train: all, the last blocks, a LoRA adapter (4-bit base for qlora), bottleneck "
        "adapters, virtual tokens, or only the output head on a frozen backbone (feature_extraction).",
    )
    lora: LoraSettings = Field(default_factory=LoraSettings)
    partial: PartialSettings = Field(default_factory=PartialSettings)
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    adapter: AdapterSettings = Field(default_factory=AdapterSettings)

    @model_validator(mode="after")
    def _no_adapters_on_a_4bit_base(self):
        if self.mode == "qlora" and self.adapter != AdapterSettings():  # adapter settings changed with qlora
            raise ValueError(
                "update.adapter is set with update.mode=qlora: bottleneck adapters on a 4-bit base are not "
                "supported; use update.mode=adapter (full-precision base) or qlora alone"
            )
        return self


class TrainingConfig(Section):
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Schedule after warm-up."
    )
    warmup_ratio: float = Field(0.03, ge=0.0, le=1.0, description="Share of steps spent warming up.")
    num_epochs: float = Field(1.0, gt=0, description="Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = Field(-1, ge=-1, description="Stop after this many optimizer steps; -1 = use num_epochs.")
    batch_size: int = Field(8, ge=1, description="Examples per device per micro-step.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-steps per optimizer step.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    seed: int = Field(42, description="Seed for data order, initialisation and sampling.")
    logging_steps: int = Field(10, ge=1, description="Log metrics every N optimizer steps.")
    eval_steps: int | None = Field(
        None, ge=1, description="Evaluate on validation every N steps (None: once per epoch)."
    )
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps (None: only at the end).")
    save_total_limit: int | None = Field(2, ge=1, description="Keep at most this many checkpoints.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after N evaluations without validation-loss improvement."
    )
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory on long sequences.")


class OutputConfig(Section):
    output_dir: str | None = Field(None, description="Run directory; default runs/<stage>-<YYYYmmdd-HHMMSS>.")
    overwrite: bool = Field(
        False, description="Move an existing non-empty run dir aside (to <dir>.old-<time>) and start fresh."
    )
    resume: str = Field(
        "never", description="'never', 'auto' (newest complete checkpoint in output_dir) or a checkpoint path."
    )
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio", "none"]] = Field(
        default_factory=lambda: ["tensorboard"],
        description="Experiment trackers that get a copy of the metrics besides metrics.jsonl (any of them; "
        "W&B offline without an API key, MLflow in a local SQLite store, Trackio in its local store).",
    )
    project: str = Field("align", min_length=1, description="The tracker project (W&B, Trackio) or MLflow experiment.")
    group: str | None = Field(
        None, description="Groups tracker runs; `align pipeline` sets it to its run dir's name for every stage."
    )

    @field_validator("report_to")
    @classmethod
    def _trackers_installed(cls, value: list[str]) -> list[str]:
        from align.trackers import missing_tracker_packages

        missing = missing_tracker_packages(value)
        if missing:
            extras = ",".join(missing)
            raise ValueError(f'{", ".join(missing)} not installed: pip install "align[{extras}]"')
        return value


def check_deepspeed_file(value: str | None) -> str | None:
    """A DeepSpeed config must exist and be JSON now, not after the model has loaded."""
    if value is None:
        return None
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"DeepSpeed config file not found: {value} (see configs/deepspeed/zero2.json)")
    try:
        json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"DeepSpeed config {value} is not valid JSON: line {exc.lineno}: {exc.msg}") from None
    return str(path.resolve())


class TrainStageConfig(Section):
    """What every training stage has in common."""

    model: ModelConfig
    data: DataConfig
    update: UpdateConfig = Field(default_factory=UpdateConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    deepspeed: str | None = Field(
        None, description="DeepSpeed JSON, e.g. configs/deepspeed/zero2.json; needs a distributed launch."
    )
    output: OutputConfig = Field(default_factory=OutputConfig)

    _check_deepspeed = field_validator("deepspeed")(classmethod(lambda cls, v: check_deepspeed_file(v)))
