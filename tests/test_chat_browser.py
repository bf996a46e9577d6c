"""`align chat --ui` in a real Chromium (Debian's, via Playwright): two models answer the same
message in their columns, a vote lands in the rankings file, and align reward's reader takes it."""

from __future__ import annotations

import json
import shutil

import pytest

from align.chat import load_chatter
from align.chat_ui import VoteFile, launch
from annotation_ui.testing import free_port

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_two_models_answer_and_a_vote_becomes_a_ranking(tiny_world, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/services.sh installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    model = str(tiny_world / "model")
    chatters = [load_chatter(name, model, 8, 0.0, 1.0) for name in ("sft", "grpo")]
    votes = VoteFile(tmp_path / "votes.jsonl")
    page_app, url = launch(chatters, votes, free_port(), block=False)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
            page = browser.new_page()
            page.goto(url)
            page.locator("#vote-left").click()  # before any answer: nothing to rank
            page.wait_for_function("document.querySelector('#status').innerText.includes('Send a message first')")
            page.locator("#message textarea").fill("What is the trade of Folkrith?")
            page.locator("#send").click()
            for column in ("#chat-0", "#chat-1"):  # each column shows the question and its model's answer
                page.wait_for_function(
                    f"document.querySelector('{column}').innerText.includes('What is the trade of Folkrith?')",
                    timeout=60_000,
                )
            page.locator("#vote-right").click()
            page.wait_for_function("document.querySelector('#status').innerText.includes('Saved (1 votes')")
            browser.close()
    finally:
        page_app.close()
    rows = [json.loads(line) for line in votes.path.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["prompt"] == "What is the trade of Folkrith?" and rows[0]["ranks"] == [2, 1]
    assert rows[0]["responses"] == [c.history[-1]["content"] for c in chatters]
    from align.reward.data import load_preferences

    read = load_preferences(str(votes.path))
    assert read.kind == "rankings" and len(read.rankings) == 1  # what align reward trains on
