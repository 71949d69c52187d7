"""The schedules page's data, drawn only when the scheduler (``brokerq.schedule``) is installed.

For each config: its schedules (static and provided) with spec, time zone, the last fire the
broker recorded and the next fires in the schedule's zone and in UTC; "fire now" is an action.
The scheduler package owns those rules (``brokerq.schedule.provider.scheduler_for``); this
module only asks it, and any part it cannot answer becomes a line on the page.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from brokerq.errors import BrokerqError, NotSupported
from brokerq.web.queues import Answer, Queue

NEXT_FIRES = 3


def _scheduler_for(queue: Queue) -> Any:
    """The config's Scheduler (``brokerq.schedule.provider.scheduler_for``): it knows the
    schedules in force (static and provided), their last fires and how to fire one now."""
    provider = importlib.import_module("brokerq.schedule.provider")
    return provider.scheduler_for(queue.config, queue.broker)


def describe(queues: Sequence[Queue]) -> list[dict[str, Any]]:
    """``[{q, items: [{name, spec, timezone, zone, last (Answer), next: [datetime]}], note}]``."""
    sections = []
    for q in queues:
        answer: Answer[list[dict[str, Any]]] = q.ask("schedules", _items, q)
        sections.append({"q": q, "items": answer.value or [], "answer": answer})
    return sections


def _items(queue: Queue) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc)
    scheduler = _scheduler_for(queue)
    try:
        items = []
        for schedule in scheduler.schedules:
            upcoming: list[datetime] = []
            after = now
            for _ in range(NEXT_FIRES):
                after = schedule.next_fire(after)
                upcoming.append(after)
            items.append(
                {
                    "name": str(schedule.name),
                    "spec": str(schedule.spec),
                    "timezone": str(schedule.timezone),
                    "zone": schedule.zone,
                    "last": _last(scheduler, str(schedule.name)),
                    "next": upcoming,
                }
            )
        return items
    finally:
        scheduler.close()


def _last(scheduler: Any, name: str) -> Answer[datetime]:
    try:
        return Answer(value=scheduler.last_fire(name))
    except NotSupported as e:
        return Answer(unsupported=str(e))
    except BrokerqError as e:
        return Answer(error=str(e))


def _fire_now(queue: Queue, name: str) -> str:
    scheduler = _scheduler_for(queue)
    try:
        job_id: str = scheduler.fire_now(name)
    except KeyError:
        raise NotSupported(f"no schedule {name!r} in {queue.path}") from None
    finally:
        scheduler.close()
    return job_id


async def fire(request: Request) -> Response:
    """POST /schedules/{slug}/{name}/fire: enqueue one run now (an action)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    from brokerq.web.actions import ACTION_TIMEOUT, audit_line, back, checked_form
    from brokerq.web.state import get_state

    state = get_state(request)
    slug, name = request.path_params["slug"], request.path_params["name"]
    queue = next((q for q in state.queues if q.slug == slug), None)
    if queue is None:
        raise HTTPException(404, f"no queue {slug!r}")
    form = await checked_form(request, state)
    answer: Answer[Any] = await run_in_threadpool(
        lambda: queue.ask("fire", _fire_now, queue, name, timeout=ACTION_TIMEOUT)
    )
    problem = answer.unsupported or answer.error
    message = f"fire {name}: {problem}" if problem else f"fired {name}: job {answer.value}"
    audit_line(request, state, "fire", slug, name, message)
    return back(request, form, "/schedules", message)


def fire_route() -> Route:
    return Route("/schedules/{slug}/{name}/fire", fire, methods=["POST"])
