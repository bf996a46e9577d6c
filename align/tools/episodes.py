"""Multi-turn rollouts: the policy answers, calls tools, reads their answers and goes on, until it
answers without a call, runs out of turns (`max_turns`) or of tokens (`max_tokens`, everything
after the prompt: its own turns and the tools' answers).

The rollout keeps the model's tokens exactly as sampled (their log-probs are what PPO scores)
and adds the tools' answers as tokens rendered by the chat template between turns. The result is
an ordinary `Rollout` whose `response_mask` covers the model's tokens only (every turn, each with
its stop token) and whose `response_attention` covers the tools' tokens too: the scoring forward
reads the whole transcript, the losses, KL and advantages act on the model's tokens alone.

A turn without tool calls ends the episode, unless the environment has `step(text) -> (observation,
done)` (a game, a user simulator): then its observation comes back as a user message until done.
One environment instance per episode (prompt x sample), created fresh, closed after.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from align.generation import GenerationSettings, Message, Rollout, chat_prompt_ids, generate, left_pad
from align.tools.calls import parse_turn
from align.tools.environment import ToolResult, run_tool, tool_schemas

_MARK = "\u2063ALIGN-TURN-END\u2063"  # an assistant message the template cannot confuse with anything else

TOOLS_SYSTEM = (
    "You may call functions to help answer. Their signatures, as JSON schemas, are within <tools></tools>:\n"
    "<tools>\n{schemas}\n</tools>\n"
    "To call one, write a JSON object with its name and arguments within <tool_call></tool_call> tags:\n"
    '<tool_call>\n{{"name": <function name>, "arguments": <arguments as a JSON object>}}\n</tool_call>\n'
    "Each result comes back in a tool message; then answer."
)
"""For chat templates that ignore `tools` (SmolLM2's): the tools described in the system message,
in the Hermes form that the `tagged` parser reads."""


@dataclass(frozen=True)
class EpisodeSettings:
    max_turns: int  # model turns per episode (a call in the last one is left unanswered)
    max_tokens: int  # tokens after the prompt, the model's and the tools' together
    call_format: str  # a parser of align.tools.calls
    timeout: float  # seconds per tool call


@dataclass
class Episode:
    """One episode's transcript after the prompt and what its tools did."""

    messages: list[Message] = field(default_factory=list)  # assistant turns and tool answers, in order
    tool_status: Counter = field(default_factory=Counter)  # ok / error / timeout / unknown / malformed
    ended: bool = False  # the last turn ended with a stop id (not cut by the token budget)
    env_reward: float | None = None

    @property
    def turns(self) -> int:
        return sum(m["role"] == "assistant" for m in self.messages)

    @property
    def final_text(self) -> str:
        """The last assistant turn: the answer the reward sources read."""
        replies = [m["content"] for m in self.messages if m["role"] == "assistant"]
        return replies[-1].strip() if replies else ""


def _render(tokenizer, messages: list[Message], **options) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **options)


def prompt_messages(tokenizer, messages: list[Message], schemas: list[dict]) -> tuple[list[Message], dict]:
    """(messages, template options) that show the tools: the template's own `tools` when it
    renders them, else a system message describing them (appended to one already there)."""
    if not schemas:
        return messages, {}
    plain = _render(tokenizer, messages, add_generation_prompt=True)
    if _render(tokenizer, messages, add_generation_prompt=True, tools=schemas) != plain:
        return messages, {"tools": schemas}
    described = TOOLS_SYSTEM.format(schemas="\n".join(json.dumps(s) for s in schemas))
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": messages[0]["content"] + "\n\n" + described}, *messages[1:]], {}
    return [{"role": "system", "content": described}, *messages], {}


def between_turns_text(tokenizer, answers: Sequence[str], stop_text: str, role: str = "tool") -> str:
    """The text between a model turn that ended with `stop_text` and the model's next turn: what
    the template writes after the stop token, the answers (tool messages, or the environment's
    observation as a user message), and the next assistant header. Found by rendering a probe
    conversation with and without the answers."""
    probe = [{"role": "user", "content": "?"}, {"role": "assistant", "content": _MARK}]
    before = _render(tokenizer, probe)
    after = _render(tokenizer, probe + [{"role": role, "content": a} for a in answers], add_generation_prompt=True)
    if not after.startswith(before) or _MARK not in before:
        raise ValueError("the chat template renders earlier turns differently once tool messages follow")
    tail = before[before.index(_MARK) + len(_MARK) :]  # e.g. "<|im_end|>\n" after the assistant's words
    glue = tail[len(stop_text) :] if stop_text and tail.startswith(stop_text) else tail
    return glue + after[len(before) :]


def check_tool_template(tokenizer, model: str) -> None:
    """The chat template can write tool answers between turns (exit 2 before training otherwise)."""
    from align.errors import AlignInputError

    try:
        between_turns_text(tokenizer, ["42"], tokenizer.eos_token or "")
    except Exception as exc:
        raise AlignInputError(
            f"the chat template of {model} cannot write a tool's answer between turns ({exc}); give the policy a "
            "template with a 'tool' role (policy.chat_template), as the docs page Tools and environments shows"
        ) from None


def _answers(env: Any, text: str, settings: EpisodeSettings) -> tuple[str, list[ToolResult]]:
    """What answers one model turn: ("tool", the results of its calls), or for a turn without
    calls ("user", the observation of the environment's step()) when it has one and is not done,
    or (role, []): the episode is over."""
    parsed = parse_turn(text, settings.call_format)
    results = [run_tool(env, call, settings.timeout) for call in parsed.calls]
    results += [ToolResult(f"Error: {error}", "malformed") for error in parsed.errors]
    if results or not callable(getattr(env, "step", None)):
        return "tool", results
    observation, done = env.step(text)
    return "user", [] if done else [ToolResult(str(observation), "observation")]


def run_episodes(
    model,
    tokenizer,
    conversations: Sequence[list[Message]],
    records: Sequence[dict],
    make_env: Callable[[], Any],
    gen: GenerationSettings,
    settings: EpisodeSettings,
) -> tuple[Rollout, list[Episode]]:
    """`gen.samples_per_prompt` episodes per conversation (prompt-major rows, like `generate`).
    Each turn, the live episodes generate together; an episode whose turn calls tools gets their
    answers and goes on. Returns the rollout (see the module docstring) and the transcripts."""
    n = gen.samples_per_prompt
    rows = [(conversation, record) for conversation, record in zip(conversations, records) for _ in range(n)]
    envs = [make_env() for _ in rows]
    episodes = [Episode() for _ in rows]
    prompts, pieces = [], [[] for _ in rows]  # pieces: (token ids, trained) in order
    try:
        for env, (conversation, record) in zip(envs, rows):
            extra = env.reset(dict(record))
            messages = [dict(m) for m in conversation]
            if extra:
                messages[-1]["content"] = f"{messages[-1]['content']}\n\n{extra}"
            messages, options = prompt_messages(tokenizer, messages, tool_schemas(env))
            prompts.append(chat_prompt_ids(tokenizer, messages, **options))
        left = [settings.max_tokens] * len(rows)
        live = list(range(len(rows)))
        for turn in range(settings.max_turns):
            if not live:
                break
            contexts = [prompts[i] + [t for ids, _ in pieces[i] for t in ids] for i in live]
            step = replace(
                gen, samples_per_prompt=1, max_new_tokens=min(gen.max_new_tokens, max(left[i] for i in live))
            )
            out = generate(model, contexts, step)
            still = []
            for j, i in enumerate(live):
                length = int(out.response_mask[j].sum())
                ids = out.response_ids[j, :length].tolist()
                stopped = bool(out.ended[j]) and length <= left[i]
                ids = ids[: left[i]]
                pieces[i].append((ids, True))
                left[i] -= len(ids)
                words = tokenizer.decode(ids[:-1] if stopped else ids, skip_special_tokens=False)
                episodes[i].messages.append({"role": "assistant", "content": words})
                episodes[i].ended = stopped
                if not stopped or turn == settings.max_turns - 1:
                    continue
                role, results = _answers(envs[i], words, settings)
                if not results:
                    continue
                if role == "tool":
                    episodes[i].tool_status.update(r.status for r in results)
                episodes[i].messages += [{"role": role, "content": r.text} for r in results]
                between = between_turns_text(tokenizer, [r.text for r in results], tokenizer.decode(ids[-1:]), role)
                tool_ids = tokenizer(between, add_special_tokens=False).input_ids
                if len(tool_ids) >= left[i]:  # no room for the answer and a reply: the episode stops here
                    episodes[i].ended = False
                    continue
                pieces[i].append((tool_ids, False))
                left[i] -= len(tool_ids)
                still.append(i)
            live = still
        for env, episode in zip(envs, episodes):
            reward = getattr(env, "reward", None)
            episode.env_reward = None if reward is None else reward()
    finally:
        for env in envs:
            close = getattr(env, "close", None)
            if close is not None:
                close()
    return _rollout(prompts, pieces, episodes, gen.pad_token_id), episodes


def _rollout(prompts, pieces, episodes: list[Episode], pad_id: int) -> Rollout:
    query_ids, query_mask = left_pad(prompts, pad_id)
    width = max(1, max(sum(len(ids) for ids, _ in row) for row in pieces))
    response_ids = torch.full((len(pieces), width), pad_id, dtype=torch.long)
    trained = torch.zeros(len(pieces), width)
    attended = torch.zeros(len(pieces), width)
    for r, row in enumerate(pieces):
        at = 0
        for ids, is_model in row:
            response_ids[r, at : at + len(ids)] = torch.tensor(ids, dtype=torch.long)
            attended[r, at : at + len(ids)] = 1.0
            trained[r, at : at + len(ids)] = float(is_model)
            at += len(ids)
    ended = torch.tensor([e.ended for e in episodes], dtype=torch.bool)
    return Rollout(query_ids, query_mask, response_ids, trained, ended, attended)


def episode_metrics(episodes: Sequence[Episode]) -> dict[str, float]:
    """tool/calls, tool/errors, tool/timeouts, tool/unknown, tool/malformed per episode, and turns."""
    total = Counter()
    for episode in episodes:
        total.update(episode.tool_status)
    count = max(len(episodes), 1)
    calls = sum(total.values())
    return {
        "tool/calls": calls / count,
        "tool/errors": total["error"] / count,
        "tool/timeouts": total["timeout"] / count,
        "tool/unknown": total["unknown"] / count,
        "tool/malformed": total["malformed"] / count,
        "tool/turns": sum(e.turns for e in episodes) / count,
    }
