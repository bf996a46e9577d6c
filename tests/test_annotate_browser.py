"""A real Chromium (Debian's, via Playwright; nothing downloaded) logs in, ranks one item with
the mouse and one with the keyboard shortcuts, undoes with a key, and the database agrees.
Markup inside a response must stay text: no script runs, no <img> appears."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from annotation_ui.assignment import display_order, to_stored
from annotation_ui.store import NewItem, Store
from annotation_ui.testing import running_app, sample_items

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVIL_PROMPT = "Which is best? <script>window.pwned = 1</script>"
EVIL_RESPONSE = '<img src=x onerror="window.pwned = 2"> a picture'


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def page_and_store(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/services.sh installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    store = Store(str(tmp_path / "browser.db"), quota=2)
    store.add_annotator("alice", "pw-alice")
    store.add_items([NewItem(EVIL_PROMPT, [EVIL_RESPONSE, "plain words", "third one"], "evil")] + sample_items(2))
    with running_app(store) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        page = browser.new_page()
        page.goto(url)
        page.locator("input[type=text]").first.fill("alice")
        page.locator("input[type=password]").fill("pw-alice")
        page.get_by_role("button", name="Login").click()
        page.wait_for_selector("#rank-0 input[type=radio]", timeout=30_000)
        yield page, store
        browser.close()
    store.close()


def test_rank_with_mouse_and_keyboard(page_and_store):
    page, store = page_and_store

    # 1. The first item holds markup: it is shown as text and nothing ran.
    assert "<script>window.pwned = 1</script>" in page.locator("#prompt").inner_text()
    assert any(EVIL_RESPONSE in page.locator(f"#resp-{i}").inner_text() for i in range(3))
    assert page.locator("#prompt script, .align-slot img").count() == 0
    assert page.evaluate("window.pwned") is None

    # 2. Mouse: click ranks 2, 3, 1 for the shown responses A, B, C, then Submit.
    first = store.next_item("alice")  # the same open item the page shows (resume, not a new one)
    for slot, rank in enumerate([2, 3, 1]):
        page.locator(f'#rank-{slot} [data-testid="{rank}-radio-label"]').click()
    page.locator("#submit-btn").click()
    stored = wait_for(lambda: store.rankings(annotator="alice"), what="the mouse ranking in the database")
    assert stored[0].item_id == first.item_id
    assert stored[0].ranks == to_stored([2, 3, 1], display_order(first.item_id, "alice", 3))

    # 3. Keyboard: digits rank A, B, C in turn; Enter submits.
    page.wait_for_function("() => document.querySelector('#status')?.innerText.includes('Saved')")
    second = store.next_item("alice")
    assert second.item_id != first.item_id
    page.locator("#prompt").click()  # focus on the page, not in a text box
    page.keyboard.press("1")
    page.keyboard.press("3")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    wait_for(lambda: len(store.rankings(annotator="alice")) == 2, what="the keyboard ranking in the database")
    latest = store.rankings(annotator="alice")[-1]
    assert latest.item_id == second.item_id
    assert latest.ranks == to_stored([1, 3, 2], display_order(second.item_id, "alice", 3))

    # 4. Letter picks a response: 'c' then '1' ranks C only; 'u' undoes the last submission.
    page.wait_for_function("() => document.querySelector('#status')?.innerText.includes('Saved')")
    page.locator("#prompt").click()
    page.keyboard.press("u")
    wait_for(lambda: len(store.rankings(annotator="alice")) == 1, what="undo by keyboard")
    assert len(store.rankings(annotator="alice", include_superseded=True)) == 2  # superseded, not deleted
    page.wait_for_function("() => document.querySelector('#status')?.innerText.includes('Undid')")
    page.locator("#prompt").click()
    page.keyboard.press("c")
    page.keyboard.press("1")
    assert page.locator('#rank-2 input[value="1"]').is_checked()
    assert not page.locator('#rank-0 input[value="1"]').is_checked()


def test_screenshots_for_the_annotation_guide(tmp_path):
    """The annotation guide's pictures come from here: login page, an item to rank, a ranked item.

    ALIGN_DOCS_SCREENSHOTS=docs/img refreshes the committed ones; otherwise they go to tmp_path."""
    import os
    import struct

    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/services.sh installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    out = tmp_path / "img"
    if os.environ.get("ALIGN_DOCS_SCREENSHOTS"):
        out = Path(os.environ["ALIGN_DOCS_SCREENSHOTS"])
    out.mkdir(parents=True, exist_ok=True)
    store = Store(str(tmp_path / "guide.db"), quota=2)
    store.add_annotator("alice", "pw-alice")
    store.add_items(
        [
            NewItem(
                "What is the capital of Norway?",
                ["The capital of Norway is Oslo.", "Oslo.", "I think it is Bergen, the largest city in Norway."],
                "guide-1",
            )
        ]
    )
    with running_app(store) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        page = browser.new_page(viewport={"width": 1100, "height": 820})
        page.goto(url)
        page.wait_for_selector("input[type=password]")
        page.screenshot(path=str(out / "annotate-login.png"))
        page.locator("input[type=text]").first.fill("alice")
        page.locator("input[type=password]").fill("pw-alice")
        page.get_by_role("button", name="Login").click()
        page.wait_for_selector("#rank-0 input[type=radio]", timeout=30_000)
        assert "capital of Norway" in page.locator("#prompt").inner_text()
        page.screenshot(path=str(out / "annotate-item.png"), full_page=True)
        shown = [page.locator(f"#resp-{slot}").inner_text() for slot in range(3)]
        for slot, text in enumerate(shown):  # best: the full sentence, then "Oslo.", then the wrong one
            rank = 1 if "is Oslo" in text else 2 if text.strip() == "Oslo." else 3
            page.locator(f'#rank-{slot} [data-testid="{rank}-radio-label"]').click()
        page.screenshot(path=str(out / "annotate-ranked.png"), full_page=True)
        browser.close()
    store.close()
    for name in ("annotate-login.png", "annotate-item.png", "annotate-ranked.png"):
        header = (out / name).read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n", name
        width, height = struct.unpack(">II", header[16:24])
        assert width >= 800 and height >= 400, (name, width, height)
