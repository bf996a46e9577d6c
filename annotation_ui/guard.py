"""What stands between the network and the ranking app. One ASGI middleware, outermost: every
request passes it before the JSON API and Gradio's router.

Cross-site requests. This app is only ever used from its own pages, so it never grants CORS
(Gradio's CORS layer, which echoes any origin when the host is not localhost, is left out by
annotation_ui.app; any `Access-Control-Allow-*` header is stripped here as well). Refused with
403 {"error": why}, nothing reaching the store:
- a CORS preflight (OPTIONS) from another origin;
- any request naming a foreign `Origin` (a script on another site reading a response, such as
  `/gradio_api/token`, or changing something);
- a POST naming a foreign `Referer`; `GET /logout` from another site (Origin, Referer or
  `Sec-Fetch-Site`);
- on the JSON API (`/api/v1/...`): a body that is not `Content-Type: application/json` (an
  HTML form on another site cannot send it), or one with neither Origin nor Referer.
An origin is the app's own when it is the scheme and Host the request came to, or one of
`server.allowed_origins` (a proxy's public address). The session cookie is SameSite=Strict too.

Request size. A body must declare its length (411 otherwise) and stay under the cap (413):
`server.max_login_bytes` for the login form, `server.max_body_bytes` for everything else.

Transport. Under HTTPS (TLS here, or `X-Forwarded-Proto: https` from a trusted proxy) every
response carries HSTS; every response says nosniff and no framing. Behind a reverse proxy,
`server.trusted_proxies` names it: uvicorn then reads the client address from
`X-Forwarded-For`, so the login throttle (annotation_ui.throttle) counts people, not the proxy;
a forwarded header from an untrusted peer is ignored, with one warning in the log.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from annotation_ui.http import TooLarge, error, read_body
from annotation_ui.login import LOGIN_PATHS, LoginRoute
from annotation_ui.rest import PREFIX

log = logging.getLogger("align.annotate.security")
HSTS = (b"strict-transport-security", b"max-age=31536000")
ALWAYS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"))
LOGOUT_PATHS = ("/logout", "/logout/")


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


class SecurityGuard:
    """ASGI middleware: origin rules, size caps, transport headers, and the login route."""

    def __init__(
        self,
        app,
        login: LoginRoute,
        allowed_origins: tuple[str, ...] = (),
        max_body_bytes: int = 1 << 20,
        max_login_bytes: int = 16 << 10,
    ):
        self.app = app
        self.login = login
        self.allowed = tuple(allowed_origins)
        self.max_body_bytes = max_body_bytes
        self.max_login_bytes = max_login_bytes
        self._warned_untrusted_proxy = False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        address, https = self.client(scope, headers)
        send = self._headers_added(send, https)
        refusal = self.refusal(scope, headers)
        if refusal is not None:
            log.warning("refused %s %s from %s: %s", scope["method"], scope["path"], address, refusal)
            await error(refusal, 403)(scope, receive, send)
            return
        is_login = scope["method"] == "POST" and scope["path"] in LOGIN_PATHS
        limit = self.max_login_bytes if is_login else self.max_body_bytes
        size = self.size_refusal(scope, headers, limit)
        if size is not None:
            await error(size[1], size[0])(scope, receive, send)
            return
        if is_login:
            try:
                body = await read_body(receive, limit)
            except TooLarge:
                await error(f"the login form is longer than {limit} bytes", 413)(scope, receive, send)
                return
            await self.login(scope, body, send, address, https)
            return
        await self.app(scope, receive, send)

    def client(self, scope: dict, headers: Headers) -> tuple[str, bool]:
        """(the client's address, whether it came over HTTPS). uvicorn has already taken both from
        X-Forwarded-For / X-Forwarded-Proto where the request came from a trusted proxy (launch
        hands it server.trusted_proxies); from anyone else those headers are ignored."""
        address = (scope.get("client") or ("?", 0))[0]
        forwarded = headers.get("x-forwarded-for")
        if forwarded and not self._warned_untrusted_proxy and address not in [h.strip() for h in forwarded.split(",")]:
            self._warned_untrusted_proxy = True
            log.warning(
                "requests carry X-Forwarded-For from %s, which is not in server.trusted_proxies: every client "
                "behind it counts as that one address for the login throttle; add the proxy's address "
                "(align annotate serve --trusted-proxies %s)",
                address,
                address,
            )
        return address, scope.get("scheme") == "https"

    def refusal(self, scope: dict, headers: Headers) -> str | None:
        """Why this request is refused as cross-site, or None."""
        origin = headers.get("origin")
        own = own_origins(scope, headers, self.allowed)
        named_origin = origin_of(origin) if origin and origin != "null" else None
        foreign_origin = origin == "null" or (named_origin is not None and named_origin not in own)
        referer = origin_of(headers["referer"]) if headers.get("referer") else None
        foreign_referer = referer is not None and referer not in own
        method, path = scope["method"], scope["path"]
        if method == "OPTIONS" and origin is not None and (foreign_origin or named_origin not in own):
            return f"cross-origin preflight refused: this app answers its own pages only (Origin {origin!r})"
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if method == "POST" and path.startswith(PREFIX + "/") and media != "application/json":
            return (
                f"the JSON API takes Content-Type: application/json, not {media or 'none'!r} "
                "(a cross-site form cannot send it)"
            )
        if foreign_origin:
            return (
                f"cross-site request refused: Origin {origin!r} is not this server's "
                "(behind a proxy, add its public address to server.allowed_origins)"
            )
        if method in ("GET", "HEAD"):
            if path in LOGOUT_PATHS and (
                foreign_referer or headers.get("sec-fetch-site") in ("cross-site", "same-site")
            ):
                return "logout from another site refused: sign out from the app's own page"
            return None
        if foreign_referer and named_origin is None:
            return f"cross-site request refused: Referer {referer!r} is not this server's (server.allowed_origins)"
        if path.startswith(PREFIX + "/"):
            if named_origin is None and referer is None:
                return (
                    "the JSON API answers requests from the app's own pages only: no Origin or Referer header "
                    "(send Origin: <the URL you open the app at>; behind a proxy, add its address to "
                    "server.allowed_origins)"
                )
        return None

    @staticmethod
    def size_refusal(scope: dict, headers: Headers, limit: int) -> tuple[int, str] | None:
        """(status, why) for a body that is unannounced or over `limit` bytes, else None."""
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return None
        length = headers.get("content-length")
        if length is None:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                return 411, "send Content-Length with the body (chunked bodies are not taken)"
            return None
        if not (length.isascii() and length.isdigit()):
            return 400, f"Content-Length {length[:20]!r} is not a number"
        if int(length) > limit:
            return 413, f"the body is {int(length)} bytes; this route takes at most {limit}"
        return None

    @staticmethod
    def _headers_added(send, https: bool):
        extra = (*ALWAYS, HSTS) if https else ALWAYS

        async def sending(message):
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if not k.lower().startswith(b"access-control-")]
                message = {**message, "headers": [*kept, *extra]}
            await send(message)

        return sending
