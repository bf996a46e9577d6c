"""`align chat MODEL [MODEL ...]`: talk to models in the terminal with their chat templates; with
several, each answers the same message, one after the other. /reset forgets the conversation,
/system TEXT sets a system prompt (and resets), /quit or end of input leaves. Tokens stream as
they are chosen (align.generation's decoding loop, the one every stage uses)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from align.generation import GenerationSettings, chat_prompt_ids, decode_responses, generate, settings_for

Message = dict[str, str]
HELP = "commands: /reset (forget the conversation), /system TEXT (a system prompt; resets), /quit"


@dataclass
class Chatter:
    """One model in the chat, with its own history (its own answers, so each keeps its thread)."""

    name: str
    model: object
    tokenizer: object
    settings: GenerationSettings
    system: str | None = None
    history: list[Message] = field(default_factory=list)

    def messages(self, text: str) -> list[Message]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, *self.history, {"role": "user", "content": text}]

    def reply(self, text: str, stream: Callable[[str], None] | None = None) -> str:
        """The model's answer to `text` (appended to the history), streamed piece by piece to `stream`."""
        ids: list[int] = []
        shown = ""

        def on_step(rows, tokens) -> None:
            nonlocal shown
            if stream is None or len(tokens) == 0:
                return
            ids.append(int(tokens[0]))
            text_so_far = self.tokenizer.decode(ids, skip_special_tokens=True).lstrip()
            if text_so_far.startswith(shown) and not text_so_far.endswith("\ufffd"):  # whole characters only
                stream(text_so_far[len(shown) :])
                shown = text_so_far

        prompt = chat_prompt_ids(self.tokenizer, self.messages(text))
        answer = decode_responses(self.tokenizer, generate(self.model, [prompt], self.settings, on_step=on_step))[0]
        if stream is not None and not shown:
            stream(answer)  # nothing streamed (a prompt-learning adapter decodes without the loop)
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
        return answer

    def reset(self, system: str | None = None) -> None:
        self.history = []
        if system is not None:
            self.system = system or None


def load_chatter(name: str, source: str, max_new_tokens: int, temperature: float, top_p: float) -> Chatter:
    from align.config.common import ModelConfig
    from align.config.loader import resolve_demo_refs
    from align.models import load_causal_lm, load_tokenizer, resolve_model_path

    config = resolve_demo_refs(ModelConfig(name_or_path=source))
    path = resolve_model_path(config.name_or_path)
    config = ModelConfig(name_or_path=path)
    model, tokenizer = load_causal_lm(config).eval(), load_tokenizer(config)
    sampling = {"do_sample": False} if temperature == 0 else {"temperature": temperature, "top_p": top_p}
    return Chatter(name, model, tokenizer, settings_for(tokenizer, model, max_new_tokens, **sampling))


def chat_loop(chatters: list[Chatter], lines: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    """Read messages from `lines` until /quit or the end; returns how many messages were answered."""
    interactive = lines.isatty()
    answered = 0
    print(f"chatting with {', '.join(c.name for c in chatters)}; {HELP}", file=out)
    while True:
        if interactive:
            print("you> ", end="", file=out, flush=True)
        line = lines.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        if text == "/reset" or text.startswith("/system"):
            system = text.removeprefix("/system").strip() if text.startswith("/system") else None
            for chatter in chatters:
                chatter.reset(system)
            print("(conversation reset" + (f"; system prompt: {system}" if system else "") + ")", file=out)
            continue
        if text.startswith("/"):
            print(f"(unknown command {text.split()[0]}; {HELP})", file=out)
            continue
        for chatter in chatters:
            print(f"[{chatter.name}] ", end="", file=out, flush=True)
            chatter.reply(text, stream=lambda piece: print(piece, end="", file=out, flush=True))
            print(file=out, flush=True)
        answered += 1
    return answered
