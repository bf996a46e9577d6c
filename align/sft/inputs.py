"""Read the files an SFT run needs and turn them into tokenized splits, an eval set and retention text.

I/O lives here; formatting and masking are in data.py. Everything that can be wrong with
the input is found here, before a model is loaded or a run dir is touched.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from align.data.conversation import prompt_and_answer
from align.data.io import read_records, read_text_lines
from align.distributed import is_main_process
from align.errors import AlignInputError
from align.sft.data import Encoded, conversations, encode_records
from align.sft.evaluate import EvalSet


@dataclass
class SFTData:
    train: Encoded
    validation: Encoded | None
    eval_set: EvalSet | None
    retention: list[str] | None
    files: list[str] = field(default_factory=list)  # for env.json's data hashes

    def length_summary(self) -> dict[str, Any]:
        out = {"train": self.train.lengths.as_dict()}
        if self.validation is not None:
            out["validation"] = self.validation.lengths.as_dict()
        return out


def split_validation(records: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out `fraction` of the records (at least one) in a seeded random order."""
    if fraction <= 0:
        return records, []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(fraction * len(records)))
    if n_val >= len(records):
        raise AlignInputError(f"data.validation_fraction = {fraction} leaves no training records out of {len(records)}")
    held = set(order[:n_val])
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]


def load_sft_data(config, tokenizer) -> SFTData:
    """Train/validation tokenized with length accounting; eval prompts; retention lines."""
    data = config.data
    records = read_records(data.train, "train", data.columns)
    if data.max_samples:
        records = records[: data.max_samples]
    files = [data.train]
    if data.validation:
        val_records = read_records(data.validation, "validation", data.columns)
        files.append(data.validation)
    else:
        records, val_records = split_validation(records, data.validation_fraction, config.training.seed)

    def encode(recs: list[dict], source: str) -> Encoded:
        encoded = encode_records(
            recs, tokenizer, data.format, data.max_length, config.too_long, source, config.system_prompt
        )
        if is_main_process():
            print(encoded.lengths.summary(data.max_length, source), flush=True)
        return encoded

    train = encode(records, data.train)
    validation = encode(val_records, data.validation or f"{data.train} (held-out part)") if val_records else None
    eval_set, eval_file = load_eval_set(config)
    retention = None
    if config.eval.retention_text:
        retention = read_text_lines(config.eval.retention_text)[: config.eval.max_retention_lines]
        files.append(config.eval.retention_text)
    if eval_file:
        files.append(eval_file)
    return SFTData(train, validation, eval_set, retention, files)


def load_eval_set(config) -> tuple[EvalSet | None, str | None]:
    """The held-out instruction set: eval.data, else data.test, else data.validation."""
    source = config.eval.data or config.data.test or config.data.validation
    if not source or not config.eval.enabled:
        return None, None
    records = read_records(source, "test", config.data.columns)
    if config.eval.max_examples:
        records = records[: config.eval.max_examples]
    ref_col = config.eval.reference_column
    if ref_col:
        records = [_with_reference(r, ref_col, source, n) for n, r in enumerate(records, start=1)]
    split = [prompt_and_answer(c) for c in conversations(records, config.data.format, source, config.system_prompt)]
    references = [r[ref_col] for r in records] if ref_col else [answer or "" for _, answer in split]
    tasks = [str(r["task"]) for r in records] if all("task" in r for r in records) else []
    return EvalSet([prompt for prompt, _ in split], [str(x) for x in references], tasks), source


def _with_reference(record: dict, column: str, source: str, number: int) -> dict:
    """Let a prompt-only record (e.g. {prompt, reference}) pass as a full example whose response is the reference."""
    if column not in record:
        raise AlignInputError(
            f"{source}: record {number} has no column '{column}' (eval.reference_column); "
            f"it has {', '.join(sorted(record))}"
        )
    record = dict(record)
    if "prompt" in record and "completion" not in record:
        record["completion"] = record[column]
    if "instruction" in record and "output" not in record:
        record["output"] = record[column]
    return record
