"""The schedules page's data, drawn only when the scheduler (``brokerq.schedule``) is installed.

For each config: its schedules (``WorkerConfig.schedules``) with spec, time zone, the last
fire the broker recorded and the next fires in the schedule's zone and in UTC. The scheduler
package owns those rules; this module only asks it, and any part it cannot answer becomes a
"not supported" line on the page.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from brokerq.errors import NotSupported
from brokerq.web.queues import Answer, Queue

NEXT_FIRES = 3


def _scheduler() -> Any:
    return importlib.import_module("brokerq.schedule")


def _last_fire(queue: Queue, name: str) -> datetime | None:
    """The last recorded fire, through the scheduler's ``last_fire(broker, config, name)``."""
    last_fire = getattr(_scheduler(), "last_fire", None)
    if last_fire is None:
        raise NotSupported("this scheduler version cannot report last fires")
    value: datetime | None = last_fire(queue.broker, queue.config, name)
    return value


def describe(queues: Sequence[Queue]) -> list[dict[str, Any]]:
    """``[{q, items: [{name, spec, timezone, last (Answer), next: [datetime]}]}]``."""
    now = datetime.now(timezone.utc)
    sections = []
    for q in queues:
        items = []
        for schedule in getattr(q.config, "schedules", None) or []:
            name = str(getattr(schedule, "name", "?"))
            upcoming: list[datetime] = []
            after = now
            for _ in range(NEXT_FIRES):
                try:
                    after = schedule.next_fire(after)
                except Exception:
                    break
                upcoming.append(after)
            items.append(
                {
                    "name": name,
                    "spec": str(getattr(schedule, "spec", "")),
                    "timezone": str(getattr(schedule, "timezone", "UTC")),
                    "zone": getattr(schedule, "zone", timezone.utc),
                    "last": q.ask("last fire", _last_fire, q, name),
                    "next": upcoming,
                }
            )
        sections.append({"q": q, "items": items})
    return sections


def _fire_now(queue: Queue, name: str) -> Any:
    fire_now = getattr(_scheduler(), "fire_now", None)
    if fire_now is None:
        raise NotSupported("this scheduler version cannot fire a schedule on demand")
    return fire_now(queue.broker, queue.config, name)


async def fire(request: Request) -> Response:
    """POST /schedules/{slug}/{name}/fire: enqueue one run now (an action)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    from brokerq.web.actions import audit_line, back, checked_form
    from brokerq.web.state import get_state

    state = get_state(request)
    slug, name = request.path_params["slug"], request.path_params["name"]
    queue = next((q for q in state.queues if q.slug == slug), None)
    if queue is None:
        raise HTTPException(404, f"no queue {slug!r}")
    form = await checked_form(request, state)
    answer: Answer[Any] = await run_in_threadpool(queue.ask, "fire", _fire_now, queue, name)
    problem = answer.unsupported or answer.error
    message = f"fire {name}: {problem}" if problem else f"fired {name}"
    audit_line(request, state, "fire", slug, name, message)
    return back(form, "/schedules", message)


def fire_route() -> Route:
    return Route("/schedules/{slug}/{name}/fire", fire, methods=["POST"])
