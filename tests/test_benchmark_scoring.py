"""Log-likelihood scoring on the tiny world's model: batched, left-padded scores equal one
sequence at a time computed by hand; pairs split the way lm-evaluation-harness splits them; rolling
windows predict every token of a text exactly once."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from align.benchmarks.loglik import encode_pair, rolling_pairs, score_pairs


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_world):
    tokenizer = AutoTokenizer.from_pretrained(tiny_world / "model")
    model = AutoModelForCausalLM.from_pretrained(tiny_world / "model").eval()
    return model, tokenizer


def by_hand(model, context, continuation):
    ids = torch.tensor([list(context) + list(continuation)])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    start = len(context)
    picked = [logprobs[start - 1 + k, token].item() for k, token in enumerate(continuation)]
    greedy = all(logprobs[start - 1 + k].argmax().item() == token for k, token in enumerate(continuation))
    return sum(picked), greedy


def test_batched_scores_equal_one_at_a_time(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    texts = [
        ("Question: where is the cat?\nAnswer:", " on the mat"),
        ("A", " b"),
        ("The sky is", " blue today, it seems"),
    ]
    pairs = [encode_pair(tokenizer, c, x) for c, x in texts] + [encode_pair(tokenizer, "A", " b")]  # a repeat
    scored = score_pairs(model, tokenizer, pairs, batch_size=3, max_length=512)
    for pair, result in zip(pairs, scored):
        logprob, greedy = by_hand(model, *pair)
        assert result.logprob == pytest.approx(logprob, abs=1e-4) and result.greedy == greedy
        assert result.tokens == len(pair[1])
    assert scored[1] == scored[3]


def test_pairs_split_like_the_harness(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    context, continuation = encode_pair(tokenizer, "Answer: ", "yes")  # the trailing space moves over
    assert tokenizer.decode(context, skip_special_tokens=True) == "Answer:" and tokenizer.decode(continuation) == " yes"
    whole = tokenizer("Answer: yes")["input_ids"]
    assert list(context + continuation) == whole
    assert encode_pair(tokenizer, "", "hello")[0] == (tokenizer.bos_token_id,)


def test_rolling_windows_predict_each_token_once(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    text = "The cat sat on the mat. The dog ran to the park and back again."
    ids = tokenizer(text)["input_ids"]
    pairs = rolling_pairs(tokenizer, text, max_length=5)
    assert [t for _, cont in pairs for t in cont] == ids
    assert pairs[0][0] == (tokenizer.bos_token_id,) and all(len(ctx) == 1 and len(cont) <= 5 for ctx, cont in pairs)
    assert pairs[1][0] == (ids[4],)  # the second window starts from the first window's last token
    total = sum(s.logprob for s in score_pairs(model, tokenizer, pairs, batch_size=2, max_length=5))
    by_windows = sum(by_hand(model, ctx, cont)[0] for ctx, cont in pairs)
    assert total == pytest.approx(by_windows, abs=1e-4)
