"""Typed configuration: YAML + dotted overrides -> validated config objects, one per stage."""

from align.config.common import (
    DataConfig,
    LoraSettings,
    ModelConfig,
    OutputConfig,
    PartialSettings,
    PromptSettings,
    Section,
    TrainingConfig,
    TrainStageConfig,
    UpdateConfig,
)
from align.config.loader import (
    apply_overrides,
    check_input_paths,
    load_config,
    read_yaml,
    resolve_demo_refs,
    to_yaml,
    validate,
)
from align.config.stages import (
    STAGE_CONFIGS,
    AnnotateConfig,
    DemoConfig,
    EvalConfig,
    PipelineConfig,
    PPOConfig,
    RAGConfig,
    RewardConfig,
    SFTConfig,
)

__all__ = [
    "STAGE_CONFIGS", "AnnotateConfig", "DataConfig", "DemoConfig", "EvalConfig", "LoraSettings", "ModelConfig",
    "OutputConfig", "PPOConfig", "PartialSettings", "PipelineConfig", "PromptSettings", "RAGConfig",
    "RewardConfig", "SFTConfig", "Section", "TrainStageConfig", "TrainingConfig", "UpdateConfig",
    "apply_overrides", "check_input_paths", "load_config", "read_yaml", "resolve_demo_refs", "to_yaml", "validate",
]
