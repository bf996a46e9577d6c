"""Small HTTP pieces the app's own routes share (the guard, the login route, the JSON API):
JSON responses as Gradio's API writes them, and request bodies read up to a size cap."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class TooLarge(Exception):
    """The request body is longer than the route takes."""


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """orjson as Gradio's own API answers: NaN (an agreement figure of too few rankings) as null."""
    options = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
    return Response(orjson.dumps(content, option=options), status, headers, media_type="application/json")


def error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


async def read_body(receive, limit: int) -> bytes:
    """The whole body, or TooLarge as soon as it passes `limit` bytes (never held in full)."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def replay(body: bytes, receive):
    """A `receive` that hands `body` over once, then defers to the real one (e.g. a disconnect)."""
    sent = False

    async def again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
