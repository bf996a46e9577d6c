"""`POST /login`, answered before Gradio's own route: one parser for the form (the throttle
counts exactly the name that is checked), the try counted before the password is checked, the
check (~30 ms of scrypt) on a worker thread so a burst of logins never stalls the event loop,
and a session cookie that is HttpOnly, SameSite=Strict, Secure under HTTPS, and ends with its
session (annotation_ui.sessions).

Answers as Gradio's page expects: 200 {"success": true} with the cookie; 400 {"detail":
"Incorrect credentials."}; 429 with Retry-After while the throttle holds the name or address.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from anyio import CapacityLimiter, to_thread
from starlette.requests import Request

from annotation_ui.http import error, json_response, replay
from annotation_ui.sessions import SessionTable
from annotation_ui.throttle import LoginThrottle

log = logging.getLogger("align.annotate.security")
LOGIN_PATHS = ("/login", "/login/")


def cookie_name(app) -> str:
    """The cookie Gradio's routes read the session token from (`access-token-<app.cookie_id>`)."""
    return f"access-token-{app.cookie_id}"


@dataclass
class LoginRoute:
    check_password: Callable[[str, str], bool]
    sessions: SessionTable
    throttle: LoginThrottle
    # One password check at a time: scrypt takes a core for ~30 ms, and on 2 cores the other one
    # keeps serving the page and the API while a burst of logins queues here.
    limiter: CapacityLimiter

    async def __call__(self, scope, body: bytes, send, address: str, https: bool) -> None:
        response = await self._answer(Request(scope, replay(body, _closed)), address, https)
        await response(scope, _closed, send)

    async def _answer(self, request: Request, address: str, https: bool):
        try:
            form = await request.form(max_files=0, max_fields=8)
        except Exception as exc:  # malformed multipart: python-multipart's own errors vary by version
            log.warning("unreadable login form from %s: %s", address, exc)
            return error("the login form could not be read: send username and password as a form", 400)
        names, passwords = form.getlist("username"), form.getlist("password")
        single = len(names) == 1 and len(passwords) == 1 and all(isinstance(v, str) for v in (*names, *passwords))
        user = names[0].strip() if single else ""
        wait = self.throttle.begin(user, address)
        if wait > 0:
            seconds = int(wait) + 1
            log.warning("login for %r from %s refused: locked for %d s after failed tries", user, address, seconds)
            return error(
                f"too many failed logins; try again in {seconds} s", 429, headers={"Retry-After": str(seconds)}
            )
        if not single:
            return error("send username and password once each, as a form", 400)
        token = await to_thread.run_sync(self._open_session, user, passwords[0], limiter=self.limiter)
        if token is None:
            log.warning("failed login for %r from %s", user, address)
            return json_response({"detail": "Incorrect credentials."}, 400)
        self.throttle.succeeded(user, address)
        response = json_response({"success": True})
        response.set_cookie(
            cookie_name(request.scope["app"]),
            token,
            max_age=int(self.sessions.max_seconds),
            path="/",
            secure=https,
            httponly=True,
            samesite="strict",
        )
        return response

    def _open_session(self, user: str, password: str) -> str | None:
        """A new session's token when the password is right (on a worker thread: both read the
        database, and the check takes ~30 ms of scrypt), else None."""
        if not self.check_password(user, password):
            return None
        token = secrets.token_urlsafe(32)
        try:
            self.sessions.open(token, user)
        except KeyError:  # the account was removed between the check and now
            return None
        return token


async def _closed():
    return {"type": "http.disconnect"}
