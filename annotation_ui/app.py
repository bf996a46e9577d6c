"""The ranking app (Gradio): login, rank, skip, undo, progress, guidelines, admin view.

Knows Gradio, not SQL: every handler reads the user from the *server-side* session
(`gr.Request.username`, set by the login against the annotators table) and calls the store.
No handler takes an annotator name from the client, so nobody can act as somebody else;
admin handlers check the role on every call. Responses are shown in a per-annotator
shuffled order (annotation_ui.assignment.display_order) recomputed on the server.

Three faces over the same `Service`: the page (events marked private), a JSON API for
gradio_client (`gr.api`), and the plain JSON API of annotation_ui.rest (`/api/v1/<name>`, the
fast one for scripts): fetch, submit, skip, undo, progress, my_rankings, admin_overview.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import string
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gradio as gr
from anyio import CapacityLimiter
from fastapi.responses import ORJSONResponse
from gradio.route_utils import CustomCORSMiddleware
from gradio.routes import App
from starlette.middleware import Middleware

from align.config.annotate import AnnotateConfig
from align.errors import AlignInputError
from annotation_ui import assignment as handout
from annotation_ui import rest
from annotation_ui.agreement import agreement_report
from annotation_ui.guard import SecurityGuard
from annotation_ui.login import LoginRoute
from annotation_ui.render import progress_line, safe_markdown
from annotation_ui.sessions import SessionTable
from annotation_ui.store import ItemView, QuotaFull, Store
from annotation_ui.throttle import LoginThrottle

log = logging.getLogger("align.annotate")

# Gradio recomputes a pandas summary of its last 10,000 events after every event (for its
# monitoring page, which this app does not use): under 50 annotators that was a large share of
# the server's time. Computed every 1,000 events instead, over at most 1,000.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")

SWITCH_INTERVAL = 0.001  # seconds; see launch
LETTERS = string.ascii_uppercase
ITEM_ID = re.compile(r"[0-9]{1,10}")
SHORTCUTS = Path(__file__).with_name("shortcuts.js")
CSS = ".align-selected { outline: 3px solid #f59e0b; border-radius: 8px; } #status { min-height: 1.5em; }"
SHORTCUT_HELP = """**Keyboard**: `a`..`h` pick a response · `1`..`9` give it that rank (then the next one is picked)
· `Enter` or `Ctrl+Enter` submit · `x` all bad · `s` skip · `u` undo last submission"""


class Service:
    """What a signed-in user may do; each method is one store call (one transaction)."""

    def __init__(self, store: Store, max_comment_chars: int = 5000):
        self.store = store
        self.max_comment_chars = max_comment_chars

    def fetch(self, user: str) -> dict[str, Any]:
        view, progress = self.store.fetch(user)
        return self._shown(view, user) | {"progress": asdict(progress)}

    def submit(
        self, user: str, item_id: int, display_ranks: list[int | None], all_bad: bool, comment: str
    ) -> dict[str, Any]:
        view = self.store.item_view(_as_id(item_id))
        comment = comment or ""
        if not isinstance(comment, str) or len(comment) > self.max_comment_chars:
            raise AlignInputError(
                f"comment: at most {self.max_comment_chars} characters of text "
                f"(got {len(comment) if isinstance(comment, str) else type(comment).__name__})"
            )
        if not isinstance(display_ranks, (list, tuple)):
            raise AlignInputError(
                f"ranks must be a list with one rank per response, got {type(display_ranks).__name__}"
            )
        k = len(view.responses)
        if all_bad and all(r is None for r in display_ranks):
            display_ranks = [1] * k  # "all bad" with no order given: one big tie
        missing = [LETTERS[i] for i, r in enumerate(display_ranks) if r is None]
        if missing:
            raise AlignInputError(f"give every response a rank ({', '.join(missing)} has none)")
        ranks = handout.validate_ranks(list(display_ranks), k, where="ranks")
        stored = handout.to_stored(ranks, handout.display_order(view.item_id, user, k))
        ranking_id = self.store.submit(user, view.item_id, stored, all_bad=bool(all_bad), comment=comment)
        return {"ranking_id": ranking_id, "item_id": view.item_id}

    def skip(self, user: str, item_id: int) -> dict[str, Any]:
        self.store.skip(user, _as_id(item_id))
        return {"skipped": _as_id(item_id)}

    def undo(self, user: str) -> dict[str, Any]:
        return {"undone_item_id": self.store.undo_last(user)}

    def progress(self, user: str) -> dict[str, Any]:
        return asdict(self.store.progress(user))

    def my_rankings(self, user: str) -> list[dict[str, Any]]:
        """The user's own active rankings, in the order they were shown to them."""
        out = []
        for r in self.store.rankings(annotator=user):
            order = handout.display_order(r.item_id, user, len(r.responses))
            out.append(
                {
                    "item_id": r.item_id,
                    "prompt": r.prompt,
                    "responses": [r.responses[i] for i in order],
                    "ranks": handout.to_display(r.ranks, order),
                    "all_bad": r.all_bad,
                    "comment": r.comment,
                }
            )
        return out

    def admin_overview(self, user: str) -> dict[str, Any]:
        if self.store.role_of(user) != "admin":
            raise AlignInputError("admin only: this account cannot see the admin view")
        by_item: dict[int, dict[str, list[int]]] = {}
        for r in self.store.rankings():
            by_item.setdefault(r.item_id, {})[r.annotator] = r.ranks
        overview = self.store.overview()
        overview["agreement"] = agreement_report(by_item)
        return overview

    def _shown(self, view: ItemView | None, user: str) -> dict[str, Any]:
        if view is None:
            return {"item_id": None, "prompt": None, "responses": []}
        order = handout.display_order(view.item_id, user, len(view.responses))
        return {"item_id": view.item_id, "prompt": view.prompt, "responses": [view.responses[i] for i in order]}


MAX_ID = 2**31 - 1  # ids are 32-bit integers in PostgreSQL


def _as_id(value: Any) -> int:
    """An item id from a client: a whole number 1..MAX_ID (as a number or plain ASCII digits), or
    one clear error. `str.isdigit` would take '²' and digits of other scripts; int() of 5,000
    digits raises its own error: both were a 500 before."""
    if isinstance(value, str) and ITEM_ID.fullmatch(value.strip()):
        value = int(value.strip())
    elif isinstance(value, float) and value.is_integer() and abs(value) <= MAX_ID:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AlignInputError(f"item_id must be a whole number, not {str(value)[:40]!r}")
    if not 1 <= value <= MAX_ID:
        raise AlignInputError(f"item_id {str(value)[:40]} is out of range (1..{MAX_ID})")
    return value


def _user(request: gr.Request | None) -> str:
    name = getattr(request, "username", None) if request is not None else None
    if not name:
        raise gr.Error("not signed in")
    return name


def _call(fn, *args):
    """Bad input and refused actions reach the user as a message, never as a stack trace."""
    try:
        return fn(*args)
    except AlignInputError as exc:
        raise gr.Error(str(exc)) from None


def add_api(service: Service) -> None:
    """JSON endpoints for scripts and tests (same checks as the page)."""

    def fetch(request: gr.Request) -> dict:
        """Your current item (or the next one): item_id, prompt, responses in your order, progress."""
        return _call(service.fetch, _user(request))

    def submit(
        item_id: int, ranks: list[int], all_bad: bool = False, comment: str = "", request: gr.Request = None
    ) -> dict:
        """Rank your current item: one rank per response in the order you got them (1 = best, ties equal)."""
        return _call(service.submit, _user(request), item_id, ranks, all_bad, comment)

    def skip(item_id: int, request: gr.Request) -> dict:
        return _call(service.skip, _user(request), item_id)

    def undo(request: gr.Request) -> dict:
        return _call(service.undo, _user(request))

    def progress(request: gr.Request) -> dict:
        return _call(service.progress, _user(request))

    def my_rankings(request: gr.Request) -> list:
        return _call(service.my_rankings, _user(request))

    def admin_overview(request: gr.Request) -> dict:
        return _call(service.admin_overview, _user(request))

    # Off the queue: each call is one POST /gradio_api/run/<name> answered directly, instead of a
    # POST, a server-sent-event stream and the queue's bookkeeping (a third of the server's time
    # per call under load). The store's transactions, not the queue, keep concurrent calls safe.
    for fn in (fetch, submit, skip, undo, progress, my_rankings, admin_overview):
        gr.api(fn, api_name=fn.__name__, queue=False)


def build_app(store: Store, config: AnnotateConfig, service: Service | None = None) -> gr.Blocks:
    service = service or Service(store)
    slots = max(config.server.max_responses, store.largest_item())  # items imported later than the launch fit too
    with gr.Blocks(title=config.server.title) as blocks:
        current = gr.State(None)  # server-side: the item id on screen
        header = gr.Markdown(elem_id="progress")
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Markdown(elem_id="prompt")
                boxes, texts, radios = [], [], []
                for i in range(slots):
                    with gr.Column(visible=False, elem_id=f"slot-{i}", elem_classes=["align-slot"]) as box:
                        texts.append(gr.Markdown(elem_id=f"resp-{i}"))
                        radios.append(gr.Radio(choices=[], label=f"Rank of {LETTERS[i]}", elem_id=f"rank-{i}"))
                    boxes.append(box)
                all_bad = gr.Checkbox(label="All responses are bad", elem_id="all-bad")
                comment = gr.Textbox(label="Comment (optional)", lines=1, elem_id="comment")
                with gr.Row():
                    submit_btn = gr.Button("Submit", variant="primary", elem_id="submit-btn")
                    skip_btn = gr.Button("Skip", elem_id="skip-btn")
                    undo_btn = gr.Button("Undo last", elem_id="undo-btn")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=1):
                with gr.Accordion("Guidelines", open=True):
                    gr.Markdown(config.guidelines)
                gr.Markdown(SHORTCUT_HELP)
        with gr.Column(visible=False) as admin_panel:
            gr.Markdown("## Admin: progress and agreement")
            admin_refresh = gr.Button("Refresh", elem_id="admin-refresh")
            admin_json = gr.JSON(label="overview")

        page = [current, header, prompt, *boxes, *texts, *radios, all_bad, comment, status]

        def show(user: str, message: str = "") -> list:
            data = service.fetch(user)
            p = data["progress"]
            line = progress_line(p["done"], p["available"], p["items_left"], p["total_items"])
            responses = data["responses"]
            if data["item_id"] is None:
                return [
                    None,
                    f"Signed in as **{safe_markdown(user)}** · {line}",
                    "### Nothing left to rank. Thank you!",
                    *[gr.Column(visible=False)] * slots,
                    *[""] * slots,
                    *[gr.Radio(choices=[], value=None)] * slots,
                    False,
                    "",
                    message,
                ]
            choices = [str(r) for r in range(1, len(responses) + 1)]
            return [
                data["item_id"],
                f"Signed in as **{safe_markdown(user)}** · {line}",
                "### Prompt\n\n" + safe_markdown(data["prompt"]),
                *[gr.Column(visible=i < len(responses)) for i in range(slots)],
                *[
                    f"**{LETTERS[i]}.**\n\n" + safe_markdown(responses[i]) if i < len(responses) else ""
                    for i in range(slots)
                ],
                *[gr.Radio(choices=choices if i < len(responses) else [], value=None) for i in range(slots)],
                False,
                "",
                message,
            ]

        def on_load(request: gr.Request):
            user = _user(request)
            is_admin = store.role_of(user) == "admin"
            overview = _call(service.admin_overview, user) if is_admin else None
            return [*_call(show, user), gr.Column(visible=is_admin), overview]

        def on_submit(request: gr.Request, item_id, bad, note, *ranks):  # request first: Gradio injects it by position
            user = _user(request)
            if item_id is None:
                return _call(show, user, "Nothing to submit.")
            shown = [int(r) if r not in (None, "") else None for r in ranks[: len(store.item_view(item_id).responses)]]
            try:
                service.submit(user, item_id, shown, bad, note)
            except QuotaFull:  # others completed it while this page was open (a lapsed reservation)
                return _call(show, user, "Others completed that item meanwhile; here is your next one.")
            except AlignInputError as exc:
                raise gr.Error(str(exc)) from None
            return _call(show, user, "Saved.")

        def on_skip(item_id, request: gr.Request):
            user = _user(request)
            if item_id is not None:
                _call(service.skip, user, item_id)
            return _call(show, user, "Skipped.")

        def on_undo(request: gr.Request):
            user = _user(request)
            undone = _call(service.undo, user)["undone_item_id"]
            return _call(show, user, "Undid your last submission; rank it again." if undone else "Nothing to undo.")

        def on_admin(request: gr.Request):
            return _call(service.admin_overview, _user(request))

        private = {"api_visibility": "private"}
        blocks.load(on_load, outputs=[*page, admin_panel, admin_json], **private)
        submit_btn.click(on_submit, inputs=[current, all_bad, comment, *radios], outputs=page, **private)
        skip_btn.click(on_skip, inputs=[current], outputs=page, **private)
        undo_btn.click(on_undo, outputs=page, **private)
        admin_refresh.click(on_admin, outputs=admin_json, **private)
        add_api(service)
    blocks.queue(default_concurrency_limit=config.server.concurrency)
    return blocks


class GuardedApp(App):
    """Gradio's app with align's sessions and without Gradio's CORS layer.

    Gradio adds a CORS middleware outside every middleware it is given, which grants preflights
    and echoes any Origin with credentials when the host is not localhost: a page on another
    site could read an annotator's session token from /gradio_api/token. This app is only used
    from its own pages and never needs CORS, so that layer is left out, and SecurityGuard is the
    outermost layer. Passed to `Blocks.launch` as its `_app` (Gradio builds the rest on it);
    tests/test_annotate_sessions.py pins the behaviour, so a Gradio upgrade that changes how the
    app is built fails there."""

    def __init__(self, sessions: SessionTable, **kwargs):
        super().__init__(**kwargs)
        self.sessions = sessions

    def add_middleware(self, middleware_class, *args, **kwargs) -> None:
        if middleware_class is CustomCORSMiddleware:
            return
        super().add_middleware(middleware_class, *args, **kwargs)

    def configure_app(self, blocks: gr.Blocks) -> None:
        super().configure_app(blocks)
        self.tokens = self.sessions  # Gradio's routes and the JSON API read live sessions only


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def launch(store: Store, config: AnnotateConfig, block: bool = True, quiet: bool = False) -> tuple[gr.Blocks, str]:
    """Serve the app with login against the annotators table; returns (blocks, local url)."""
    if not store.annotators():
        raise AlignInputError("no annotators yet: add one with `align annotate add-user NAME` before serving")
    service = Service(store, max_comment_chars=config.server.max_comment_chars)
    blocks = build_app(store, config, service)
    # Handlers wait on the database several times a call and hand the GIL over each time; a
    # thread whose answer came back waited up to 5 ms (Python's default switch interval) per
    # round trip for a busy thread to let go. 1 ms: paced p50 on PostgreSQL 111-198 -> 62-66 ms
    # (bench/annotate_load.py, 50 annotators, 2 cores).
    sys.setswitchinterval(SWITCH_INTERVAL)
    server = config.server
    if server.ssl_certfile is None and not _loopback(server.host):
        log.warning(
            "serving on %s without HTTPS: passwords and rankings cross the network in clear text; give "
            "--ssl-certfile/--ssl-keyfile or serve behind a reverse proxy that terminates TLS (README)",
            server.host,
        )
    sessions = SessionTable(
        store.credential_stamp,
        idle_seconds=server.session_idle_minutes * 60,
        max_seconds=server.session_max_hours * 3600,
    )
    login = LoginRoute(
        store.check_login,
        sessions,
        LoginThrottle(free_tries=server.login_free_tries, max_delay=server.login_max_lock_seconds),
        limiter=CapacityLimiter(1),
    )
    guard = Middleware(
        SecurityGuard,
        login=login,
        allowed_origins=tuple(server.allowed_origins),
        max_body_bytes=server.max_body_bytes,
        max_login_bytes=server.max_login_bytes,
    )
    api = Middleware(rest.JsonApi, service=service, threads=server.api_threads, max_body_bytes=server.max_body_bytes)
    # uvicorn reads X-Forwarded-For/-Proto only from these peers (by default it trusts loopback,
    # so anyone on this machine could pose as any address). Gradio starts uvicorn without a way to
    # pass forwarded_allow_ips, so it goes through the variable uvicorn reads at that moment.
    os.environ["FORWARDED_ALLOW_IPS"] = ",".join(server.trusted_proxies)
    _, url, _ = blocks.launch(
        server_name=config.server.host,
        server_port=config.server.port or None,
        auth=store.check_login,
        auth_message="Sign in with the account your admin created (align annotate add-user).",
        prevent_thread_lock=True,
        quiet=quiet,
        max_threads=max(40, config.server.concurrency),
        css=CSS,
        js=SHORTCUTS.read_text(),
        ssr_mode=False,
        footer_links=["api"],
        ssl_certfile=server.ssl_certfile,
        ssl_keyfile=server.ssl_keyfile,
        ssl_verify=server.ssl_certfile is None,  # a self-signed certificate cannot be verified by Gradio's own check
        # the guard first and outermost: a refused request never reaches the JSON API or Gradio's router
        _app=GuardedApp(sessions, middleware=[guard, api], default_response_class=ORJSONResponse),
    )
    if block:
        blocks.block_thread()
    return blocks, url
