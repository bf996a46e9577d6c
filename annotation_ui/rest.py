"""The app's plain JSON API (`/api/v1/<name>`): answered by an ASGI middleware on the app's own
server, signed in by the page's login cookie, calling the same `Service` as the page and the
Gradio API.

    POST /login                      form: username, password (the page's own login; sets the cookie)
    POST /api/v1/fetch               {}                                   -> item_id, prompt, responses, progress
    POST /api/v1/submit              {"item_id": 3, "ranks": [2, 1, 3], "all_bad": false, "comment": ""}
    POST /api/v1/skip                {"item_id": 3}
    POST /api/v1/undo | progress | my_rankings | admin_overview   {}

Errors: 401 not signed in; 400 with {"error": message} for bad input or a refused action (the
message the page shows): a body that is not strict JSON (NaN, Infinity, numbers out of range,
nesting deeper than 1,024), an unknown field, a wrong type; 404 an unknown name; 405 not a POST;
413 a body over `server.max_body_bytes`.

Why this shape (bench/annotate_load.py, 50 annotators, the database on the same 2 cores; figures
in README, "annotation server throughput"):
- a Gradio API call (`gr.api`, which gradio_client speaks) rebuilds the session state and runs
  the Blocks machinery; FastAPI routes on Gradio's app still matched a hundred routes and ran
  dependency injection and pydantic per call. Answering before Gradio's router skips both.
- the store calls run on at most `server.api_threads` threads (4): with Gradio's 40 the threads
  mostly contended for the interpreter lock and the items' row locks; with one, every statement's
  round trip waited for the one before. PostgreSQL closed loop, 1,600 submits, runs interleaved:
  1 thread 76-97/s, 2: 97-120, 3: 93-121, 4: 113-122, 8: 103-104. A database across a network,
  where each statement waits longer, may want more.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from anyio import CapacityLimiter, to_thread
from starlette.requests import Request
from starlette.responses import Response

from align.errors import AlignInputError
from annotation_ui.http import TooLarge, error, json_response, read_body
from annotation_ui.login import cookie_name

PREFIX = "/api/v1"
NOT_SIGNED_IN = object()
# each route's JSON fields, in the order the Service takes them (for clients that pass them by position)
FIELDS = {
    "fetch": (),
    "submit": ("item_id", "ranks", "all_bad", "comment"),
    "skip": ("item_id",),
    "undo": (),
    "progress": (),
    "my_rankings": (),
    "admin_overview": (),
}
# the fields a client may leave out: (default, type, what it takes)
OPTIONAL = {"all_bad": (False, bool, "true or false"), "comment": ("", str, "a string")}
EXAMPLE = {"submit": {"item_id": 3, "ranks": [2, 1, 3], "all_bad": False, "comment": ""}, "skip": {"item_id": 3}}


def body(name: str, args: tuple) -> dict:
    """The JSON body of a call to route `name` with positional args."""
    return dict(zip(FIELDS[name], args, strict=True))


def arguments(name: str, raw: bytes) -> list[Any]:
    """The Service's arguments for route `name` from a request body, or one clear error naming
    the field and what it takes (the Service checks item ids and ranks with the page's messages)."""
    fields = FIELDS[name]
    shape = f"a JSON object such as {json.dumps(EXAMPLE.get(name, {}))}"
    try:  # orjson: strict JSON (no NaN or Infinity), numbers in range, at most 1,024 levels deep
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise AlignInputError(f"{name}: the body is not JSON; send {shape} ({exc})") from None
    if not isinstance(data, dict):
        raise AlignInputError(f"{name}: the body is a JSON {type(data).__name__}; send {shape}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise AlignInputError(f"{name}: unknown field {unknown[0]!r}; it takes {', '.join(fields) or 'no fields'}")
    args = []
    for field in fields:
        value = data.get(field)
        if field in OPTIONAL:
            default, kind, takes = OPTIONAL[field]
            value = default if value is None else value
            if not isinstance(value, kind):
                raise AlignInputError(f"{name}: {field} takes {takes}, not {json.dumps(value)}")
        args.append(value)
    return args


class JsonApi:
    """ASGI middleware on Gradio's app (inside SecurityGuard, see annotation_ui.app.launch):
    answers `POST /api/v1/<name>` itself, hands every other request on. The signed-in user comes
    from the session cookie annotation_ui.login set, looked up in the app's SessionTable."""

    def __init__(self, app, service, threads: int, max_body_bytes: int = 1 << 20):
        self.app = app
        self.service = service
        self.limiter = CapacityLimiter(threads)  # anyio's worker threads, at most this many at once
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        response = await self._answer(Request(scope, receive))
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        name = request.scope["path"][len(PREFIX) + 1 :].strip("/")
        if name not in FIELDS:
            return error(f"no route {name!r}; routes: {', '.join(FIELDS)}", 404)
        if request.method != "POST":
            return error(f"{name} takes POST with a JSON body, not {request.method}", 405)
        try:
            args = arguments(name, await read_body(request.receive, self.max_body_bytes))
        except TooLarge:
            return error(f"{name}: the body is longer than {self.max_body_bytes} bytes", 413)
        except AlignInputError as exc:
            return error(str(exc), 400)
        method = getattr(self.service, name)

        def call():  # on a worker thread: the session check may read the database, as the call does
            user = self._user(request)
            return NOT_SIGNED_IN if user is None else method(user, *args)

        try:
            result = await to_thread.run_sync(call, limiter=self.limiter)
        except AlignInputError as exc:
            return error(str(exc), 400)
        if result is NOT_SIGNED_IN:
            return error("not signed in: POST /login with username and password", 401)
        return json_response(result)

    @staticmethod
    def _user(request: Request) -> str | None:
        """The signed-in user of the session cookie (annotation_ui.login sets it; the app's
        SessionTable answers only for live sessions)."""
        app = request.scope["app"]
        token = request.cookies.get(cookie_name(app))
        return app.tokens.get(token) if token else None
