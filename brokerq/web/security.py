"""Authentication, read-only mode, CSRF and response headers, as one ASGI middleware.

Order of the checks for every HTTP request (pages, htmx fragments and static assets alike):

1. With a token set, the request must carry it: ``Authorization: Bearer TOKEN`` or the signed
   login cookie (HttpOnly, SameSite=Strict; set by ``POST /login``). Otherwise 401: the login
   form for a browser page, a one-line body for anything else. ``/login`` itself is open.
2. Without ``allow_actions`` every method other than GET/HEAD (but the login) answers 403.
3. Actions also need a CSRF token (``csrf_ok``) and a same-origin ``Origin`` when one is sent.

Every response carries a Content-Security-Policy that allows scripts and styles from this
origin only (no inline scripts, no eval), and refuses framing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timezone
from urllib.parse import urlsplit

from itsdangerous import BadSignature, TimestampSigner
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brokerq.web.settings import WebSettings

audit = logging.getLogger("brokerq.web.audit")

COOKIE = "brokerq_web"
COOKIE_MAX_AGE = 12 * 3600
"""Seconds a login lasts."""
CSRF_MAX_AGE = 12 * 3600
"""Seconds a CSRF token (drawn into a page's forms) stays valid."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # no-referrer would make form POSTs say Origin: null
    "cache-control": "no-store",
}
SAFE_METHODS = frozenset({"GET", "HEAD"})
OPEN_PATHS = frozenset({"/login", "/logout"})


def _cookie_signer(token: str) -> TimestampSigner:
    # Derived from the token: a login survives a restart, and changing the token ends it.
    key = hmac.new(token.encode(), b"brokerq-web-cookie", hashlib.sha256).hexdigest()
    return TimestampSigner(key, salt="brokerq.web.login")


def _csrf_signer(settings: WebSettings) -> TimestampSigner:
    return TimestampSigner(settings.secret, salt="brokerq.web.csrf")


def login_cookie(settings: WebSettings) -> str:
    """A signed cookie value proving the token was given (only valid while it is the token)."""
    assert settings.token
    return _cookie_signer(settings.token).sign(secrets.token_urlsafe(8)).decode()


def who(request: Request, settings: WebSettings) -> str:
    """How the request authenticated: ``bearer``, ``cookie:<login id>``, ``none`` (no token
    is set), or ``""`` (not authenticated)."""
    if not settings.token:
        return "none"
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), settings.token.encode()
    ):
        return "bearer"
    cookie = request.cookies.get(COOKIE)
    if cookie:
        try:
            login = _cookie_signer(settings.token).unsign(cookie, max_age=COOKIE_MAX_AGE)
            return f"cookie:{login.decode()[:8]}"  # one login session, for the audit log
        except BadSignature:
            pass
    return ""


def csrf_token(settings: WebSettings) -> str:
    """A token for one page's forms (signed with the process secret, valid CSRF_MAX_AGE)."""
    return _csrf_signer(settings).sign(secrets.token_urlsafe(8)).decode()


def csrf_ok(request: Request, settings: WebSettings, token: str | None) -> bool:
    """True when ``token`` is one we signed and the request's Origin and Sec-Fetch-Site (when
    the browser sends them) say it came from this dashboard's own pages."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin and origin != "null":
        if urlsplit(origin).netloc != request.headers.get("host", ""):
            return False
    elif origin == "null":
        return False
    if not token:
        return False
    try:
        _csrf_signer(settings).unsign(token, max_age=CSRF_MAX_AGE)
    except BadSignature:
        return False
    return True


class SecurityMiddleware:
    """Applies the module's rules around the app; ``login_page(request, error)`` draws the form."""

    def __init__(
        self,
        app: ASGIApp,
        settings: WebSettings,
        login_page: Callable[[Request, str, int], Response],
    ) -> None:
        self.app = app
        self.settings = settings
        self.login_page = login_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, request: Request) -> Response | None:
        path = request.url.path
        if self.settings.token and path not in OPEN_PATHS and not who(request, self.settings):
            wants_page = request.method == "GET" and "text/html" in request.headers.get(
                "accept", ""
            )
            if wants_page and request.headers.get("hx-request") != "true":
                return self.login_page(request, "", 401)
            return PlainTextResponse(
                "401: a token is required (Authorization: Bearer TOKEN, or log in at /login)\n",
                status_code=401,
                headers={"www-authenticate": 'Bearer realm="brokerq"'},
            )
        if (
            request.method not in SAFE_METHODS
            and path not in OPEN_PATHS
            and not self.settings.allow_actions
        ):
            audit.info(
                "audit when=%s who=%s from=%s action=refused target=%s %s result=read-only",
                datetime.now(timezone.utc).isoformat(timespec="seconds"),
                who(request, self.settings) or "anonymous",
                request.client.host if request.client else "?",
                request.method,
                path[:200],
            )
            return PlainTextResponse(
                "403: read-only dashboard (start it with --allow-actions to change state)\n",
                status_code=403,
            )
        return None


def local_path(target: str, fallback: str = "/") -> str:
    """``target`` when it is a path on this site, else ``fallback`` (no open redirect:
    ``//host``, ``/\\host``, schemes and control characters are refused)."""
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
        or urlsplit(target).netloc
    ):
        return fallback
    return target


def flash_signature(settings: WebSettings, message: str) -> str:
    """A short MAC of a flash line, so only this dashboard can put words on its pages."""
    mac = hmac.new(settings.secret.encode(), b"flash:" + message.encode(), hashlib.sha256)
    return mac.hexdigest()[:24]


def login_response(settings: WebSettings, request: Request, target: str) -> Response:
    """303 to ``target`` (a local path only) with the signed login cookie set."""
    response: Response = HTMLResponse("", status_code=303, headers={"location": local_path(target)})
    response.set_cookie(
        COOKIE,
        login_cookie(settings),
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response
