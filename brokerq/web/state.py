"""What every request handler shares: settings, queues, the sampler and the templates."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from brokerq.web import present, security
from brokerq.web.queues import Queue
from brokerq.web.sampler import Sampler
from brokerq.web.settings import WebSettings

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def environment() -> Environment:
    """Jinja2 with autoescape on for every template (so payloads are always escaped)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(present.FILTERS)
    env.globals.update(
        preview=present.preview,
        mask_headers=present.mask_headers,
        mask_value=present.mask_value,
        detail=present.detail,
    )
    return env


class State:
    """Held on ``app.state.brokerq``; one per app."""

    def __init__(self, settings: WebSettings, queues: list[Queue], schedules: bool) -> None:
        self.settings = settings
        self.queues = queues
        self.schedules = schedules
        self.sampler = Sampler(queues, settings.sample_every, settings.sample_keep)
        self.env = environment()

    def render(
        self, request: Request, template: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        """Render ``template`` with the shared context (nav, CSRF token, flags, flash line)."""
        base = {
            "request": request,
            "settings": self.settings,
            "actions": self.settings.allow_actions,
            "csrf": security.csrf_token(self.settings) if self.settings.allow_actions else "",
            "queues": self.queues,
            "has_schedules": self.schedules,
            "flash": self._flash(request),
            "path": request.url.path,
            "logged_in": bool(self.settings.token),
        }
        html = self.env.get_template(template).render({**base, **context})
        return HTMLResponse(html, status_code=status)

    def _flash(self, request: Request) -> str:
        """The ``msg`` of an action's redirect, only when its ``sig`` is ours (a crafted link
        cannot put words on the dashboard)."""
        message = request.query_params.get("msg", "")[:500]
        given = request.query_params.get("sig", "")
        if message and hmac.compare_digest(given, security.flash_signature(self.settings, message)):
            return message
        return ""


def get_state(request: Request) -> State:
    state: State = request.app.state.brokerq
    return state
