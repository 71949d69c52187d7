"""``create_app``: the Starlette application behind ``brokerq web``.

Routes (all GET unless noted; POSTs are actions, see brokerq.web.actions)::

    /                         overview: one card per config, refreshed by htmx
    /fragments/cards          the overview's cards alone (htmx)
    /q/{slug}                 a queue: counts, dead letters (paged), actions
    /q/{slug}/dead?ref=REF    one dead letter
    /dead                     dead letters of every queue
    /job?id=ID[&q=slug]       a job by id (Broker.job)
    /workers                  live workers (Broker.workers, from heartbeats)
    /schedules                schedules (only when brokerq.schedule exists)
    POST /q/{slug}/do/{action}   retry | purge | pause | resume | revoke
    /login, POST /login, POST /logout
    /static/...               app.css, vendored htmx and Pico
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from brokerq.web import actions, views
from brokerq.web.queues import Queue
from brokerq.web.security import SecurityMiddleware
from brokerq.web.settings import WebSettings
from brokerq.web.state import STATIC, State

logger = logging.getLogger(__name__)


def create_app(queues: Sequence[Queue], settings: WebSettings, *, sample: bool = True) -> Starlette:
    """The app for ``queues`` (the caller keeps ownership: close them after the app stops).

    ``sample``: run the background sampler while the app runs (charts); pages sample on
    demand either way.
    """
    for q in queues:
        q.timeout = settings.call_timeout
    state = State(settings, list(queues), schedules=views.has_schedules())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if sample:
            state.sampler.start()
        try:
            yield
        finally:
            state.sampler.stop()

    routes = [
        Route("/", views.overview),
        Route("/fragments/cards", views.cards_fragment),
        Route("/q/{slug}", views.queue_page),
        Route("/q/{slug}/dead", views.dead_letter_page),
        Route("/q/{slug}/do/{action}", actions.queue_action, methods=["POST"]),
        Route("/dead", views.dead_page),
        Route("/job", views.job_page),
        Route("/workers", views.workers_page),
        Route("/schedules", views.schedules_page),
        Route("/login", actions.login_form, methods=["GET"]),
        Route("/login", actions.login_submit, methods=["POST"]),
        Route("/logout", actions.logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    if state.schedules:
        from brokerq.web.schedules import fire_route

        routes.insert(-1, fire_route())
    middleware = [Middleware(SecurityMiddleware, settings=settings, login_page=actions.login_page)]
    hosts = settings.trusted_hosts
    if hosts is not None:
        # Without a token, only loopback Host headers: a DNS-rebinding page cannot reach us.
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=hosts))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.brokerq = state
    return app
