"""Rollout plumbing: response masks through EOS, left padding that changes nothing, the critic
and value head shapes, and the NaN guard that refuses an update."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_llama

from align.errors import TrainingDiverged
from align.generation import GenerationSettings, Rollout, generate, left_pad, response_mask_from_tokens
from align.ppo.engines import Optimised
from align.rl.rollout import token_logprobs, token_values
from align.rl.value_model import critic_from_causal_lm

EOS, PAD = 2, 0


@pytest.fixture(scope="module")
def model():
    return tiny_llama(vocab_size=40, pad=PAD, eos=EOS)


def test_response_mask_keeps_tokens_through_first_eos():
    ids = torch.tensor([[5, 6, EOS, 7, EOS], [5, 6, 7, 8, 9], [EOS, PAD, PAD, PAD, PAD]])
    mask, ended = response_mask_from_tokens(ids, (EOS,))
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert ended.tolist() == [True, False, True]


def test_left_pad():
    ids, mask = left_pad([[1, 2, 3], [4]], PAD)
    assert ids.tolist() == [[1, 2, 3], [PAD, PAD, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_logprobs_and_values_do_not_depend_on_padding(model):
    """A short prompt scored in a left-padded batch gets exactly the numbers it gets alone."""
    torch.manual_seed(1)
    settings = GenerationSettings(max_new_tokens=6, temperature=1.0, eos_token_ids=(EOS,), pad_token_id=PAD)
    batch = generate(model, [[5, 6, 7, 8, 9, 10], [11, 12]], settings)
    assert batch.query_mask.tolist()[1] == [0, 0, 0, 0, 1, 1]
    alone = Rollout(
        batch.query_ids[1:, 4:],
        batch.query_mask[1:, 4:],
        batch.response_ids[1:],
        batch.response_mask[1:],
        batch.ended[1:],
    )
    critic = critic_from_causal_lm(model)
    torch.nn.init.normal_(critic.value_head.weight)
    with torch.no_grad():
        lp_batch, ent = token_logprobs(model, batch, 1.0, with_entropy=True)
        lp_alone, _ = token_logprobs(model, alone, 1.0)
        v_batch, v_alone = token_values(critic, batch), token_values(critic, alone)
    m = batch.response_mask[1].bool()
    assert torch.allclose(lp_batch[1][m], lp_alone[0][m], atol=1e-5)
    assert torch.allclose(v_batch[1][m], v_alone[0][m], atol=1e-5)
    assert lp_batch.shape == ent.shape == v_batch.shape == batch.response_ids.shape
    assert (lp_batch <= 0).all()


def test_scoring_forward_matches_the_sampler_under_left_padding(model):
    """token_logprobs (one forward, explicit position ids) equals the distribution generate() sampled from."""
    from transformers import GenerationConfig

    prompts = [[5, 6, 7, 8, 9], [11, 12]]
    settings = GenerationSettings(max_new_tokens=5, temperature=0.7, eos_token_ids=(EOS,), pad_token_id=PAD)
    torch.manual_seed(3)
    batch = generate(model, prompts, settings)
    ids, mask = left_pad(prompts, PAD)
    config = GenerationConfig(
        do_sample=True,
        temperature=0.7,
        top_k=0,
        top_p=1.0,
        max_new_tokens=5,
        eos_token_id=[EOS],
        pad_token_id=PAD,
        output_scores=True,
        return_dict_in_generate=True,
    )
    torch.manual_seed(3)
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    assert torch.equal(out.sequences[:, ids.shape[1] :], batch.response_ids)
    sampler = (
        torch.stack([torch.log_softmax(s, -1) for s in out.scores], 1)
        .gather(-1, batch.response_ids.unsqueeze(-1))
        .squeeze(-1)
    )
    with torch.no_grad():
        lp, _ = token_logprobs(model, batch, 0.7)
    m = batch.response_mask.bool()
    assert torch.allclose(lp[m], sampler[m], atol=1e-4)


def test_nan_loss_refuses_update_and_keeps_weights():
    layer = torch.nn.Linear(2, 1)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    opt = torch.optim.AdamW(layer.parameters(), lr=0.1)
    wrapped = Optimised(layer, opt, None, 1.0, "policy")
    with pytest.raises(TrainingDiverged, match="policy loss is nan"):
        wrapped.step(layer(torch.ones(1, 2)).sum() * float("nan"))
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())
    inf_input = torch.tensor([[float("inf"), 1.0]])
    with pytest.raises(TrainingDiverged):
        wrapped.step((layer(inf_input) * 0).sum() + layer.bias.sum() * 0)  # finite loss, but grad NaN
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())


def test_zero_length_generation_decodes_to_empty_text():
    class Tok:
        def decode(self, ids, skip_special_tokens=True):
            return " ".join(str(i) for i in ids)

    ids = torch.tensor([[EOS, PAD, PAD], [5, 6, EOS], [5, 6, 7]])
    mask, ended = response_mask_from_tokens(ids, (EOS,))
    rollout = Rollout(torch.ones(3, 1, dtype=torch.long), torch.ones(3, 1, dtype=torch.long), ids, mask, ended)
    from align.generation import decode_responses

    assert decode_responses(Tok(), rollout) == ["", "5 6", "5 6 7"]
