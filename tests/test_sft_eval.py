"""SFT evaluation math against hand-computed values: masked NLL/perplexity, answer metrics, forgetting ratio."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from align.metrics.text import contains_answer
from align.sft.data import Encoded
from align.sft.evaluate import (
    answer_metrics,
    forgetting_ratio,
    loss_and_perplexity,
    masked_nll,
)


class FixedLM(nn.Module):
    """Logits that put probability p on token `favourite` and spread the rest evenly over V tokens."""

    def __init__(self, vocab: int, favourite: int, p: float):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        rest = (1 - p) / (vocab - 1)
        logp = torch.full((vocab,), math.log(rest))
        logp[favourite] = math.log(p)
        self.register_buffer("logp", logp)

    def forward(self, input_ids, attention_mask=None):
        batch, width = input_ids.shape
        return SimpleNamespace(logits=self.logp.expand(batch, width, -1).clone())


def test_masked_nll_counts_only_masked_targets():
    model = FixedLM(vocab=5, favourite=1, p=0.5)
    # targets are the tokens at mask==1 positions (predicted from position t-1); pad never counts
    ids = [[0, 1, 1, 3], [0, 2]]
    masks = [[0, 0, 1, 1], [0, 1]]
    nll, count = masked_nll(model, ids, masks, pad_id=4, batch_size=2)
    # targets: token 1 (p=0.5), token 3 (p=0.125), token 2 (p=0.125)
    assert count == 3
    assert nll == pytest.approx(-(math.log(0.5) + 2 * math.log(0.125)), rel=1e-6)
    encoded = Encoded(input_ids=ids, completion_mask=masks)
    figures = loss_and_perplexity(model, encoded, pad_id=4, batch_size=1)  # batching must not matter
    assert figures["loss"] == pytest.approx(nll / 3, rel=1e-6)
    assert figures["perplexity"] == pytest.approx(math.exp(nll / 3), rel=1e-6)


def test_answer_metrics_by_hand():
    preds = ["blue", "Sure! The favorite color of Zorbin is red.", "7"]
    refs = ["Blue.", "red", "8"]
    result = answer_metrics(preds, refs, ["fact_qa", "fact_qa", "arithmetic"])
    assert result["exact_match"] == pytest.approx(1 / 3)
    assert result["contains"] == pytest.approx(2 / 3)
    # token F1 of the polite answer: normalised "sure favorite color of zorbin is red" (7 tokens) vs "red"
    assert result["token_f1"] == pytest.approx((1.0 + 2 * (1 / 7) * 1 / (1 / 7 + 1) + 0.0) / 3)
    assert result["per_task"]["fact_qa"]["n"] == 2 and result["per_task"]["arithmetic"]["exact_match"] == 0.0
    assert contains_answer("the answer is 12", "1") == 0.0  # whole words only


def test_forgetting_ratio():
    assert forgetting_ratio({"retention_perplexity": 20.0}, {"retention_perplexity": 25.0}) == pytest.approx(1.25)
    assert forgetting_ratio({}, {"retention_perplexity": 25.0}) is None
