"""`align chat --ui`: the terminal chat's page. One message box; each model answers it in its own
column; with two models, buttons say which answer is better (or a tie), and each vote is appended
to a rankings file (`{"prompt", "responses", "ranks"}`, rank 1 best) that `align reward` and
`align dpo` read as they are. The conversation logic is align.chat's."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from align.chat import Chatter

VOTES = {"left": [1, 2], "right": [2, 1], "tie": [1, 1]}


class VoteFile:
    """Rankings appended one JSON line at a time (flushed and fsynced: a vote is never lost)."""

    def __init__(self, path: Path):
        self.path, self.lock = Path(path), threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, prompt: str, responses: list[str], ranks: list[int]) -> None:
        import os

        line = json.dumps({"prompt": prompt, "responses": responses, "ranks": ranks, "source": "align chat"})
        with self.lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def count(self) -> int:
        if not self.path.is_file():
            return 0
        return sum(1 for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip())


def build_page(chatters: list[Chatter], votes: VoteFile | None):
    """The Gradio page (not launched)."""
    import gradio as gr

    lock = threading.Lock()  # one generation at a time: the models are shared by every browser tab
    with gr.Blocks(title="align chat") as page:
        gr.Markdown("### align chat: " + " · ".join(c.name for c in chatters))
        with gr.Row():
            boards = [gr.Chatbot(label=c.name, elem_id=f"chat-{i}") for i, c in enumerate(chatters)]
        message = gr.Textbox(label="message", elem_id="message", placeholder="Ask something; Enter sends")
        with gr.Row():
            send = gr.Button("Send", elem_id="send", variant="primary")
            reset = gr.Button("Reset", elem_id="reset")
        voting = votes is not None and len(chatters) == 2
        with gr.Row(visible=voting):
            vote_buttons = {
                side: gr.Button(label, elem_id=f"vote-{side}")
                for side, label in (("left", f"{chatters[0].name} is better"), ("tie", "Tie"),
                                    ("right", f"{chatters[-1].name} is better"))
            }  # fmt: skip
        status = gr.Markdown(elem_id="status")
        last = gr.State(None)  # (prompt, answers) of the last exchange, what a vote ranks

        def answer(text: str, *histories):
            text = (text or "").strip()
            if not text:
                return ("", *histories, None, "")
            with lock:
                answers = [c.reply(text) for c in chatters]
            new = [
                [*(h or []), {"role": "user", "content": text}, {"role": "assistant", "content": a}]
                for h, a in zip(histories, answers)
            ]
            hint = "Which answer is better?" if voting else ""
            return ("", *new, (text, answers), hint)

        def start_over():
            for c in chatters:
                c.reset()
            return (*([] for _ in chatters), None, "(conversation reset)")

        outputs = [message, *boards, last, status]
        send.click(answer, [message, *boards], outputs)
        message.submit(answer, [message, *boards], outputs)
        reset.click(start_over, None, [*boards, last, status])
        for side, button in vote_buttons.items():

            def vote(exchange, side=side):
                if exchange is None:
                    return None, "Send a message first, then vote on the two answers."
                prompt, answers = exchange
                votes.add(prompt, answers, VOTES[side])
                return None, f"Saved ({votes.count()} votes in {votes.path}); `align reward` reads that file."

            button.click(vote, [last], [last, status])
    return page


def launch(chatters: list[Chatter], votes: VoteFile | None, port: int, block: bool = True):
    """Serve the page on 127.0.0.1:`port`; returns (page, url)."""
    page = build_page(chatters, votes)
    page.queue(default_concurrency_limit=1)
    _, url, _ = page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=not block, quiet=not block)
    return page, url
