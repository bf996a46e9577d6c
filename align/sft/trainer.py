"""TRL's SFTTrainer with the model's own next-token loss and length-bucketed batches.

TRL 1.16 computes every SFT loss through its chunked "fused LM head": it recomputes the LM head
in the backward pass and, every step, the entropy and top-1 accuracy over the full vocabulary.
That saves GPU memory on large vocabularies, but on a CPU it was 42% of `align sft`'s time on
SmolLM2 (49k tokens; bench/ceiling.py --profile). The model's own cross-entropy over the labels
TRL's collator built (prompt and padding at -100) is the same loss; TRL's path stays for what
only it handles (MoE load balancing, label smoothing, DFT, a custom loss, sequence parallelism).
"""

from __future__ import annotations

from transformers import Trainer
from trl import SFTTrainer

from align.sft.batching import LengthBucketSampler


class AlignSFTTrainer(SFTTrainer):
    def __init__(self, *args, group_by_length: bool = False, **kwargs):
        self.group_by_length = group_by_length
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        """Length-bucketed batches (align.sft.batching) unless packing already leaves no padding."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_length or self.args.packing or dataset is None or "input_ids" not in dataset.column_names:
            return super()._get_train_sampler(train_dataset)
        lengths = [len(ids) for ids in dataset["input_ids"]]
        return LengthBucketSampler(lengths, self.args.per_device_train_batch_size, self.args.seed)

    def _plain_loss_applies(self) -> bool:
        parallelism = getattr(self.accelerator, "parallelism_config", None)
        return (
            self.args.loss_type == "nll"
            and self.compute_loss_func is None
            and self.label_smoother is None
            and not self.aux_loss_enabled
            and not (parallelism is not None and getattr(parallelism, "sp_enabled", False))
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._plain_loss_applies():
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs["use_cache"] = False
        mode = "train" if self.model.training else "eval"
        if mode == "train":  # the trained-token count TRL logs as num_tokens (non-padding tokens, every rank)
            local = (
                inputs["attention_mask"].sum()
                if "attention_mask" in inputs
                else inputs["position_ids"].new_tensor(inputs["position_ids"].size(1))
            )
            self._total_train_tokens += int(self.accelerator.gather_for_metrics(local).sum())
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
