"""What stands between the network and the ranking app: cross-site requests refused, password
guessing slowed. One ASGI middleware ahead of the JSON API and Gradio's router.

Cross-site requests. A signed-in annotator's browser sends the login cookie with any request to
the app, whichever page made it (the cookie Gradio sets is SameSite=None). So:
- the JSON API (`/api/v1/...`) takes only `Content-Type: application/json` (an HTML form on
  another site cannot send it without a CORS preflight, which this app never grants) and only
  from an `Origin` (or, without one, a `Referer`) that is the app's own: the scheme and Host the
  request came to, or one of `server.allowed_origins` (a proxy's public address);
- every other POST (Gradio's routes, `/login`) that names a foreign Origin or Referer is refused;
  one that names none (gradio_client, curl) goes through, since a browser always names the page.
Refusals are 403 with {"error": why}; nothing reaches the store.

Password guessing. Failed logins are counted per account and per client address; past a number
of free tries each further failure locks that key for a doubling delay (1 s, 2 s, 4 s, ... up
to `max_delay`), answered 429 with Retry-After while it lasts, and logged. A success clears the
account's count. Counts live in this process (one server process per database is the usual
deployment; several processes each keep their own).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import orjson
from starlette.datastructures import Headers

from annotation_ui.rest import PREFIX

log = logging.getLogger("align.annotate.security")
LOGIN_PATHS = ("/login", "/login/")


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


@dataclass
class LoginThrottle:
    """Failed-login bookkeeping for one kind of key (an account, or an address)."""

    free_tries: int = 5
    base_delay: float = 1.0
    max_delay: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _keys: dict[str, _Failures] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, key: str) -> float:
        """Seconds until `key` may try again (0: now)."""
        with self._lock:
            entry = self._keys.get(key)
            return max(0.0, entry.locked_until - self.clock()) if entry else 0.0

    def failed(self, key: str) -> float:
        """Count a failure; returns the lock it earns (0 within the free tries)."""
        with self._lock:
            entry = self._keys.setdefault(key, _Failures())
            entry.count += 1
            over = entry.count - self.free_tries
            delay = 0.0 if over <= 0 else min(self.max_delay, self.base_delay * 2 ** (over - 1))
            entry.locked_until = self.clock() + delay
            return delay

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)


def origin_of(url: str) -> str | None:
    """'scheme://host[:port]' of a URL (an Origin header is already one), or None."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def own_origins(scope: dict, headers: Headers, allowed: tuple[str, ...]) -> set[str]:
    """The origins a request may come from: the address it was sent to, and the configured ones."""
    origins = {origin_of(o) for o in allowed} - {None}
    host = headers.get("host")
    if host:
        origins.add(f"{scope.get('scheme', 'http')}://{host.lower()}")
    return origins


def _json(status: int, message: str, extra: list[tuple[bytes, bytes]] = ()) -> dict:
    body = orjson.dumps({"error": message})
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    return {"status": status, "headers": head, "body": body}


class SecurityGuard:
    """ASGI middleware: the origin and content-type rules, and the login throttle."""

    def __init__(
        self,
        app,
        allowed_origins: tuple[str, ...] = (),
        accounts: LoginThrottle | None = None,
        addresses: LoginThrottle | None = None,
    ):
        self.app = app
        self.allowed = tuple(allowed_origins)
        self.accounts = accounts or LoginThrottle()
        self.addresses = addresses or LoginThrottle(free_tries=20)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self.refusal(scope, headers)
        if refusal is not None:
            log.warning("refused %s %s: %s", scope["method"], scope["path"], refusal)
            await _send(send, _json(403, refusal))
            return
        if scope["path"] in LOGIN_PATHS:
            await self._login(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: dict, headers: Headers) -> str | None:
        """Why this state-changing request is refused, or None."""
        origin = headers.get("origin")
        named = origin_of(origin) if origin and origin != "null" else None
        if named is None and headers.get("referer"):
            named = origin_of(headers["referer"])
        foreign = (origin == "null" or named is not None) and named not in own_origins(scope, headers, self.allowed)
        if scope["path"].startswith(PREFIX + "/"):
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json":
                return (
                    f"the JSON API takes Content-Type: application/json, not {media or 'none'!r} "
                    "(a cross-site form cannot send it)"
                )
            if named is None or foreign:
                said = f"Origin {origin or named!r} is not this server's" if foreign else "no Origin or Referer header"
                return (
                    f"the JSON API answers requests from the app's own pages only: {said} (send Origin: <the URL "
                    "you open the app at>; behind a proxy, add its address to server.allowed_origins)"
                )
            return None
        if foreign:
            return (
                f"cross-site request refused: Origin {origin or named!r} is not this server's (server.allowed_origins)"
            )
        return None

    async def _login(self, scope, receive, send) -> None:
        body, more = b"", True
        while more:  # read the form, then hand the same bytes on
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        user = _username(Headers(scope=scope).get("content-type", ""), body)
        address = (scope.get("client") or ("?", 0))[0]
        account_key = f"user:{user}"
        wait = max(self.accounts.wait(account_key), self.addresses.wait(f"addr:{address}"))
        if wait > 0:
            seconds = int(wait) + 1
            log.warning("login for %r from %s refused: locked for %d s after failed tries", user, address, seconds)
            retry = [(b"retry-after", str(seconds).encode())]
            await _send(send, _json(429, f"too many failed logins; try again in {seconds} s", retry))
            return
        status = {}
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, replay, watch)
        if status.get("code") == 200:
            self.accounts.succeeded(account_key)
            return
        if status.get("code") in (400, 401):
            lock = max(self.accounts.failed(account_key), self.addresses.failed(f"addr:{address}"))
            log.warning("failed login for %r from %s%s", user, address, f"; locked for {lock:.0f} s" if lock else "")


def _username(content_type: str, body: bytes) -> str:
    """The form's username (urlencoded or multipart), or '' when it has none."""
    if "multipart/form-data" in content_type:
        marker = b'name="username"'
        at = body.find(marker)
        if at < 0:
            return ""
        start = body.find(b"\r\n\r\n", at) + 4
        return body[start : body.find(b"\r\n", start)].decode("utf-8", "replace").strip()
    values = parse_qs(body.decode("utf-8", "replace")).get("username", [""])
    return values[0].strip()


async def _send(send, response: dict) -> None:
    await send({"type": "http.response.start", "status": response["status"], "headers": response["headers"]})
    await send({"type": "http.response.body", "body": response["body"]})
