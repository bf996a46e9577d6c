"""A reward model (and so a critic) on any causal LM, also on architectures transformers gives no
sequence-classification class (Granite, Cohere, ERNIE 4.5, ...).

transformers' own `<Arch>ForSequenceClassification` classes are all the same thing: the
architecture's base model, a bias-free linear `score` head on every position's last hidden
state, read at the last non-pad token (`GenericForSequenceClassification`). For an
architecture without one, `register_sequence_classifier` builds that class from the
architecture's own PreTrainedModel and registers it with AutoModelForSequenceClassification,
so training (TRL, PEFT's SEQ_CLS), saving, loading and scoring work as for Llama, and the
checkpoint is the usual `model.*` + `score.weight`. Call it before loading such a model.
"""

from __future__ import annotations

import sys

from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel


def register_sequence_classifier(config: PretrainedConfig) -> type | None:
    """The class registered for `config`'s architecture, or None where transformers has one (or
    the architecture is no causal LM, so no head can go on it)."""
    from transformers.modeling_layers import GenericForSequenceClassification

    config_class = type(config)
    if config_class in AutoModelForSequenceClassification._model_mapping:
        return None
    try:
        causal = AutoModelForCausalLM._model_mapping[config_class]
    except KeyError:
        return None
    pretrained = next(
        (base for base in causal.__mro__[1:] if issubclass(base, PreTrainedModel) and base is not PreTrainedModel),
        None,
    )
    if pretrained is None:
        return None
    name = causal.__name__.replace("ForCausalLM", "").replace("LMHeadModel", "") + "ForSequenceClassification"
    cls = type(name, (GenericForSequenceClassification, pretrained), {"__module__": __name__})
    setattr(sys.modules[__name__], name, cls)  # importable by name, as save/load machinery may expect
    AutoModelForSequenceClassification.register(config_class, cls, exist_ok=True)
    return cls
