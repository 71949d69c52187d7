"""``brokerq web``: a dashboard for the queues of one or more worker configs.

Server-rendered pages (Starlette + Jinja2, served by uvicorn) with htmx and Pico CSS vendored
under ``static/vendor`` so it works offline. Install with ``pip install 'brokerq[web]'``.

Safe by default (see README "Web dashboard"): binds 127.0.0.1; any other address needs a token
(``--auth-token`` / ``BROKERQ_WEB_TOKEN``); read-only unless ``--allow-actions``, and then
every action is a POST carrying a CSRF token and is written to the ``brokerq.web.audit`` log.

Importing this package is cheap: Starlette and Jinja2 are imported only by ``brokerq.web.app``.
"""

from __future__ import annotations

__all__: list[str] = []
