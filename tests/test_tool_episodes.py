"""Multi-turn rollouts with tools: the loop on a scripted policy (turns, masks: exactly the
model's tokens trained, the tools' text attended but never in the loss; the token budget; every
failure answered as text), and the scoring forward of a real tiny model over such a rollout."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import align.tools.episodes as episodes_module
from align.demo.tokenizer import CHAT_TEMPLATE
from align.generation import GenerationSettings, Rollout, left_pad, response_mask_from_tokens
from align.rl.rollout import token_logprobs
from align.tools.episodes import EpisodeSettings, between_turns_text, episode_metrics, prompt_messages, run_episodes

WITH_TOOL_ROLE = CHAT_TEMPLATE.replace(
    "{% else %}", "{% elif message['role'] == 'tool' %}{{ 'Tool: ' + message['content'] + '\\n' }}{% else %}"
)


class Adder:
    def reset(self, row: dict) -> str | None:
        self.row = row
        return None

    def add(self, a: int, b: int) -> int:
        """Add two whole numbers.

        Args:
            a: the first
            b: the second
        """
        return a + b

    def fail(self, why: str) -> str:
        """Always raises.

        Args:
            why: the message
        """
        raise RuntimeError(why)

    def reward(self) -> float:
        return float(self.row["id"])


@pytest.fixture(scope="module")
def tokenizer(tiny_world):
    tok = AutoTokenizer.from_pretrained(tiny_world / "model")
    tok.chat_template = WITH_TOOL_ROLE
    return tok


def scripted(tokenizer, script: dict[int, list[str]], monkeypatch) -> list[list[list[int]]]:
    """Replace generation with a script: row r's k-th turn is script[r][k] + EOS. Records the
    contexts each turn was generated from."""
    seen: list[list[list[int]]] = []
    calls = {row: 0 for row in script}

    def generate(model, contexts, settings):
        seen.append([list(c) for c in contexts])
        live = [row for row in sorted(script) if calls[row] < len(script[row])][: len(contexts)]
        replies = []
        for row in live:
            ids = tokenizer(script[row][calls[row]], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
            replies.append(ids[: settings.max_new_tokens])
            calls[row] += 1
        width = max(len(r) for r in replies)
        response = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in replies])
        mask, ended = response_mask_from_tokens(response, (tokenizer.eos_token_id,))
        query, query_mask = left_pad(contexts, tokenizer.pad_token_id)
        return Rollout(query, query_mask, response, mask, ended)

    monkeypatch.setattr(episodes_module, "generate", generate)
    return seen


def gen(tokenizer, max_new_tokens: int = 100) -> GenerationSettings:
    return GenerationSettings(
        max_new_tokens, eos_token_ids=(tokenizer.eos_token_id,), pad_token_id=tokenizer.pad_token_id
    )


CALL = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'


def test_a_call_is_answered_and_only_the_models_tokens_are_trained(tokenizer, monkeypatch):
    seen = scripted(tokenizer, {0: [CALL, "It is 5."], 1: ["No tools needed."]}, monkeypatch)
    conversations = [[{"role": "user", "content": "2 plus 3?"}], [{"role": "user", "content": "hi"}]]
    rollout, episodes = run_episodes(
        None,
        tokenizer,
        conversations,
        [{"id": 7}, {"id": 8}],
        Adder,
        gen(tokenizer),
        EpisodeSettings(4, 200, "tagged", 5),
    )
    first = [m["role"] for m in episodes[0].messages]
    assert first == ["assistant", "tool", "assistant"] and episodes[0].messages[1]["content"] == "5"
    assert episodes[0].final_text == "It is 5." and episodes[1].final_text == "No tools needed."
    assert [e.turns for e in episodes] == [2, 1] and all(e.ended for e in episodes)
    assert [e.env_reward for e in episodes] == [7.0, 8.0]
    # the second turn was generated for row 0 alone, from its prompt + call + the tool's answer
    assert len(seen) == 2 and len(seen[1]) == 1
    between = between_turns_text(tokenizer, ["5"], tokenizer.eos_token)
    assert between == "\nTool: 5\nAssistant:"
    # row 0's response: call + EOS (trained), the tool's text (attended only), reply + EOS (trained)
    call_ids = tokenizer(CALL, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    tool_ids = tokenizer(between, add_special_tokens=False).input_ids
    reply_ids = tokenizer("It is 5.", add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    expected = call_ids + tool_ids + reply_ids
    assert rollout.response_ids[0, : len(expected)].tolist() == expected
    trained = [1.0] * len(call_ids) + [0.0] * len(tool_ids) + [1.0] * len(reply_ids)
    assert rollout.response_mask[0, : len(expected)].tolist() == trained
    assert rollout.response_attention[0].tolist() == [1.0] * len(expected) + [0.0] * (rollout.response_ids.shape[1] - len(expected))  # fmt: skip
    assert seen[1][0] == rollout.query_ids[0][rollout.query_mask[0].bool()].tolist() + call_ids + tool_ids
    # row 1: one turn, the same mask for training and attention
    single = tokenizer("No tools needed.", add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    assert rollout.response_mask[1].sum() == rollout.response_attention[1].sum() == len(single)
    assert episode_metrics(episodes) == {
        "tool/calls": 0.5,
        "tool/errors": 0.0,
        "tool/timeouts": 0.0,
        "tool/unknown": 0.0,
        "tool/malformed": 0.0,
        "tool/turns": 1.5,
    }


def test_failures_are_answers_and_the_token_budget_ends_an_episode(tokenizer, monkeypatch):
    broken = '<tool_call>{"name": "add", "arguments": {"a": 1</tool_call>'
    raising = '<tool_call>{"name": "fail", "arguments": {"why": "disk on fire"}}</tool_call>'
    unknown = '<tool_call>{"name": "multiply", "arguments": {}}</tool_call>'
    wrong_args = '<tool_call>{"name": "add", "arguments": {"x": 1}}</tool_call>'
    script = {0: [broken, raising, unknown, wrong_args, "gave up"]}
    scripted(tokenizer, script, monkeypatch)
    convo = [[{"role": "user", "content": "go"}]]
    _, (episode,) = run_episodes(
        None, tokenizer, convo, [{"id": 0}], Adder, gen(tokenizer), EpisodeSettings(5, 500, "tagged", 5)
    )
    answers = [m["content"] for m in episode.messages if m["role"] == "tool"]
    assert answers[0].startswith("Error: the tool call is not JSON")
    assert answers[1] == "Error: fail failed: RuntimeError: disk on fire"
    assert answers[2].startswith("Error: no tool named 'multiply'; the tools are: add, fail")
    assert answers[3].startswith("Error: add cannot take these arguments")
    assert dict(episode.tool_status) == {"malformed": 1, "error": 2, "unknown": 1} and episode.final_text == "gave up"
    # a budget of 30 tokens: the first call (and its answer) fit, the reply is cut, the episode is not "ended"
    scripted(tokenizer, {0: [CALL, "It is five, as the tool said, and that is my final answer."]}, monkeypatch)
    rollout, (cut,) = run_episodes(None, tokenizer, convo, [{"id": 0}], Adder, gen(tokenizer), EpisodeSettings(4, 30, "tagged", 5))  # fmt: skip
    assert rollout.response_attention.sum() == 30 and not cut.ended and not bool(rollout.ended[0])
    # a call in the last allowed turn is left unanswered
    scripted(tokenizer, {0: [CALL, CALL]}, monkeypatch)
    _, (last,) = run_episodes(None, tokenizer, convo, [{"id": 0}], Adder, gen(tokenizer), EpisodeSettings(2, 500, "tagged", 5))  # fmt: skip
    assert [m["role"] for m in last.messages] == ["assistant", "tool", "assistant"]


def test_tools_go_in_a_system_message_when_the_template_ignores_them(tokenizer):
    """A template that renders `tools` gets them (the demo worlds' one line); one that ignores
    them (SmolLM2's) gets a system message describing them, appended to one already there."""
    import copy

    schemas = [{"type": "function", "function": {"name": "add", "parameters": {"properties": {}}}}]
    messages, options = prompt_messages(tokenizer, [{"role": "user", "content": "2+3?"}], schemas)
    assert options == {"tools": schemas} and messages == [{"role": "user", "content": "2+3?"}]
    ignoring = copy.copy(tokenizer)
    template = tokenizer.chat_template
    start = template.index("{% if tools %}")
    ignoring.chat_template = template[:start] + template[template.index("{% endif %}", start) + len("{% endif %}") :]
    messages, options = prompt_messages(ignoring, [{"role": "user", "content": "2+3?"}], schemas)
    assert options == {} and messages[0]["role"] == "system" and '"name": "add"' in messages[0]["content"]
    with_system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"}]
    messages, _ = prompt_messages(ignoring, with_system, schemas)
    assert len(messages) == 2 and messages[0]["content"].startswith("Be brief.\n\n") and "<tool_call>" in messages[0]["content"]  # fmt: skip


def test_the_scoring_forward_reads_the_tools_text(tokenizer, tiny_world, monkeypatch):
    """Log-probs of the model's tokens in a rollout with a tool answer equal those of one
    unpadded forward over the whole transcript: the tool's tokens are attended, not dropped."""
    scripted(tokenizer, {0: [CALL, "It is 5."], 1: ["short"]}, monkeypatch)
    conversations = [[{"role": "user", "content": "2 plus 3?"}], [{"role": "user", "content": "a much longer question here"}]]  # fmt: skip
    rollout, _ = run_episodes(None, tokenizer, conversations, [{"id": 0}, {"id": 1}], Adder, gen(tokenizer), EpisodeSettings(4, 200, "tagged", 5))  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(tiny_world / "model").eval()
    with torch.no_grad():
        logprobs, _ = token_logprobs(model, rollout)
        prompt = rollout.query_ids[0][rollout.query_mask[0].bool()]
        n = int(rollout.response_attention[0].sum())
        whole = torch.cat([prompt, rollout.response_ids[0, :n]]).unsqueeze(0)
        alone = torch.log_softmax(model(whole).logits[0, len(prompt) - 1 : -1].float(), -1)
        expected = alone.gather(-1, rollout.response_ids[0, :n].unsqueeze(-1)).squeeze(-1)
    trained = rollout.response_mask[0, :n].bool()
    assert torch.allclose(logprobs[0, :n][trained], expected[trained], atol=1e-4)


def test_a_llama3_style_turn_is_read_by_its_own_parser(tokenizer, monkeypatch):
    """The family decides how a turn is read: Llama 3's JSON turn calls a tool under `llama3` and
    is plain text under `tagged`; Hermes tags are plain text under `llama3`."""
    from align.ppo.experience import episode_settings

    turn = '{"name": "add", "parameters": {"a": 2, "b": 3}}'
    convo = [[{"role": "user", "content": "2 plus 3?"}]]
    scripted(tokenizer, {0: [turn, "It is 5."]}, monkeypatch)
    _, (llama,) = run_episodes(None, tokenizer, convo, [{"id": 0}], Adder, gen(tokenizer), EpisodeSettings(4, 200, "llama3", 5))  # fmt: skip
    assert [m["role"] for m in llama.messages] == ["assistant", "tool", "assistant"] and llama.messages[1][
        "content"
    ] == "5"
    scripted(tokenizer, {0: [turn]}, monkeypatch)
    _, (tagged,) = run_episodes(None, tokenizer, convo, [{"id": 0}], Adder, gen(tokenizer), EpisodeSettings(4, 200, "tagged", 5))  # fmt: skip
    assert [m["role"] for m in tagged.messages] == ["assistant"] and tagged.final_text == turn
    scripted(tokenizer, {0: [CALL]}, monkeypatch)
    _, (plain,) = run_episodes(None, tokenizer, convo, [{"id": 0}], Adder, gen(tokenizer), EpisodeSettings(4, 200, "llama3", 5))  # fmt: skip
    assert plain.turns == 1 and not plain.tool_status

    from align.config.ppo import PPOConfig

    config = PPOConfig.model_validate(  # the config's choice, or the template's family under auto
        {
            "policy": {"name_or_path": "m"},
            "data": {"train": "prompts.jsonl"},
            "reward": {"sources": [{"rule": "length", "target_words": 3}]},
            "rollout": {"max_new_tokens": 32},
            "critic": {"init": "policy"},
            "tools": {"env": "calculator", "max_turns": 3, "timeout_s": 5.0},
        }
    )
    assert episode_settings(config, tokenizer) == EpisodeSettings(3, 96, "tagged", 5.0)  # 3 turns x 32 tokens
    config.tools.call_format = "llama3"
    assert episode_settings(config, tokenizer).call_format == "llama3"
