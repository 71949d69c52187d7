"""State-changing requests: POST only, refused (403) unless ``--allow-actions``, each with a
CSRF token, and each written to the ``brokerq.web.audit`` log as one line: who (how the
request authenticated and from where), what (action, queue, targets), when (UTC), and the
result. They end in a 303 back to the page they came from, with the result as a flash line.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from brokerq.broker import Broker
from brokerq.web import security
from brokerq.web.queues import Answer, Queue
from brokerq.web.state import State, get_state

audit = logging.getLogger("brokerq.web.audit")

MAX_REFS = 1000
ACTION_TIMEOUT = 60.0
"""Seconds an action waits for its broker call (retrying thousands of dead letters takes a while)."""
WRONG_TOKEN_DELAY = 1.0
"""Seconds a wrong login token waits before its answer."""


def _refs(form: FormData) -> list[str] | None:
    """The refs named in the form, or None when ``all=1`` asks for every one (400 otherwise)."""
    refs = [str(r)[:512] for r in form.getlist("ref") if str(r).strip()][:MAX_REFS]
    if refs:
        return refs
    if form.get("all") == "1":
        return None
    raise HTTPException(400, "name the dead letters (ref=...) or ask for all=1")


def _revoke(broker: Broker, job_id: str) -> bool:
    with broker.delay_producer() as producer:
        return producer.revoke(job_id)


def _plan(action: str, form: FormData) -> tuple[Callable[[Broker], Any], str]:
    """The broker call for ``action`` and a description of its target."""
    if action == "retry":
        refs = _refs(form)
        return (lambda b: b.retry_dead(refs)), "all" if refs is None else ",".join(refs)
    if action == "purge":
        refs = _refs(form)
        return (lambda b: b.purge_dead(refs)), "all" if refs is None else ",".join(refs)
    if action == "pause":
        return (lambda b: b.pause()), "queue"
    if action == "resume":
        return (lambda b: b.resume()), "queue"
    if action == "revoke":
        job_id = str(form.get("job_id", "")).strip()[:256]
        if not job_id:
            raise HTTPException(400, "job_id is required")
        return (lambda b: _revoke(b, job_id)), job_id
    raise HTTPException(404, f"no action {action!r}")


def _outcome(action: str, answer: Answer[Any]) -> str:
    if answer.unsupported:
        return f"{action}: not supported: {answer.unsupported}"
    if answer.error:
        return f"{action} failed: {answer.error}"
    value = answer.value
    if action in ("retry", "purge"):
        return f"{action}: {value} dead letter(s)"
    if action == "revoke":
        return "revoked" if value else "revoke: not found (already run or revoked)"
    return f"{action}: done"


async def checked_form(request: Request, state: State) -> FormData:
    """The POSTed form, once its CSRF token and Origin are checked (403 otherwise)."""
    form = await request.form(max_files=0, max_fields=MAX_REFS + 10)
    token = form.get("csrf")
    if not security.csrf_ok(request, state.settings, token if isinstance(token, str) else None):
        audit_line(request, state, "refused", "-", "-", "bad or missing CSRF token")
        raise HTTPException(403, "missing or invalid CSRF token: reload the page and try again")
    return form


def audit_line(
    request: Request, state: State, action: str, queue: str, target: str, result: str
) -> None:
    client = request.client.host if request.client else "?"
    audit.info(
        "audit when=%s who=%s from=%s action=%s queue=%s target=%s result=%s",
        datetime.now(timezone.utc).isoformat(timespec="seconds"),
        security.who(request, state.settings) or "anonymous",
        client,
        action,
        queue,
        target[:300],
        result,
    )


def back(request: Request, form: FormData, fallback: str, message: str) -> Response:
    """303 to the form's ``next`` (a local path only) carrying ``message`` and its MAC."""
    target = security.local_path(str(form.get("next", "") or fallback), fallback)
    settings = get_state(request).settings
    query = urlencode({"msg": message, "sig": security.flash_signature(settings, message)})
    sep = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{sep}{query}", status_code=303)


async def queue_action(request: Request) -> Response:
    state = get_state(request)
    slug, action = request.path_params["slug"], request.path_params["action"]
    queue: Queue | None = next((q for q in state.queues if q.slug == slug), None)
    if queue is None:
        raise HTTPException(404, f"no queue {slug!r}")
    form = await checked_form(request, state)
    call, target = _plan(action, form)
    answer = await run_in_threadpool(
        lambda: queue.ask(action, call, queue.broker, timeout=ACTION_TIMEOUT)
    )
    state.sampler.forget(queue)
    message = _outcome(action, answer)
    audit_line(request, state, action, slug, target, message)
    return back(request, form, f"/q/{slug}", message)


async def login_form(request: Request) -> Response:
    state = get_state(request)
    if not state.settings.token:
        return RedirectResponse("/", status_code=303)
    return login_page(request, "", 200)


async def login_submit(request: Request) -> Response:
    state = get_state(request)
    if not state.settings.token:
        return RedirectResponse("/", status_code=303)
    form = await request.form(max_files=0, max_fields=5)
    given = str(form.get("token", ""))
    target = str(form.get("next", "/"))
    if not hmac.compare_digest(given.encode(), state.settings.token.encode()):
        audit_line(request, state, "login", "-", "-", "wrong token")
        await anyio.sleep(WRONG_TOKEN_DELAY)  # slows guessing down; the token stays the defence
        return login_page(
            request, "That token is not the one this dashboard was started with.", 401, target
        )
    return security.login_response(state.settings, request, target)


async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(security.COOKIE, path="/")
    return response


def login_page(request: Request, error: str, status: int, target: str | None = None) -> Response:
    """The login form (also the body of a 401 for a browser page); ``target``: where to go
    after logging in (default: the page asked for)."""
    state = get_state(request)
    if target is None:
        target = request.query_params.get("next") or (
            request.url.path if request.url.path != "/login" else "/"
        )
    html = state.env.get_template("login.html").render(
        {"error": error, "next": security.local_path(target)}
    )
    return HTMLResponse(html, status_code=status)
