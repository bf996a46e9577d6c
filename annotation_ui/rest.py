"""The app's plain JSON API (`/api/v1/<name>`): FastAPI routes on the app's own server, signed in
by the page's login cookie, calling the same `Service` as the page and the Gradio API.

Why a second way in besides `gr.api` (which gradio_client speaks): a Gradio API call rebuilds
the session state, pre- and post-processes through the Blocks machinery and runs a dozen
middlewares per request; for a one-statement handler that was most of the server's time.
Measured with bench/annotate_load.py (50 annotators, PostgreSQL on the same 2 cores): see
README ("annotation server throughput").

    POST /login                      form: username, password (the page's own login; sets the cookie)
    POST /api/v1/fetch               {}                                   -> item_id, prompt, responses, progress
    POST /api/v1/submit              {"item_id": 3, "ranks": [2, 1, 3], "all_bad": false, "comment": ""}
    POST /api/v1/skip                {"item_id": 3}
    POST /api/v1/undo | progress | my_rankings | admin_overview   {}

Errors: 401 not signed in; 400 with {"error": message} for bad input or a refused action
(the message the page shows).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from align.errors import AlignInputError

PREFIX = "/api/v1"
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


def body(name: str, args: tuple) -> dict:
    """The JSON body of a call to route `name` with positional args."""
    return dict(zip(FIELDS[name], args, strict=True))


class SubmitBody(BaseModel):
    item_id: Any = None  # validated by the Service, with its own messages
    ranks: Any = None
    all_bad: bool = False
    comment: str = ""


class ItemBody(BaseModel):
    item_id: Any = None


class NotSignedIn(Exception):
    pass


def add_routes(app, service) -> None:
    """Add the routes to Gradio's FastAPI app (as returned by Blocks.launch), ahead of its own."""

    def user(request: Request) -> str:
        cookies = request.cookies
        token = cookies.get(f"access-token-{app.cookie_id}") or cookies.get(f"access-token-unsecure-{app.cookie_id}")
        name = app.tokens.get(token)
        if not name:
            raise NotSignedIn
        return name

    def answer(fn, request: Request, *args) -> Any:
        try:
            return fn(user(request), *args)
        except NotSignedIn:
            return JSONResponse({"error": "not signed in: POST /login with username and password"}, status_code=401)
        except AlignInputError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    router = APIRouter(prefix=PREFIX)

    @router.post("/submit")
    def submit(body: SubmitBody, request: Request) -> Any:
        return answer(service.submit, request, body.item_id, body.ranks, body.all_bad, body.comment)

    @router.post("/skip")
    def skip(body: ItemBody, request: Request) -> Any:
        return answer(service.skip, request, body.item_id)

    def no_fields(method):
        def call(request: Request) -> Any:
            return answer(method, request)

        return call

    for name in (name for name, fields in FIELDS.items() if not fields):  # fetch, undo, progress, ...
        router.add_api_route(f"/{name}", no_fields(getattr(service, name)), methods=["POST"], name=name)

    before = len(app.router.routes)
    app.include_router(router)
    ours = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[:0] = ours  # ahead of any catch-all route of Gradio's
