"""The pages (GET only). Each page asks the brokers through ``Queue.ask`` in a worker thread,
so a slow or unreachable broker shows as a line on the page, never a crash or a hung loop."""

from __future__ import annotations

import importlib.util
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from brokerq.broker import DeadLetter
from brokerq.web.queues import Answer, Queue
from brokerq.web.state import State, get_state

MAX_PAGE = 200
"""Pages of dead letters one can page through (the backend lists up to (page + 1) * size)."""


def has_schedules() -> bool:
    """True when the scheduler package (``brokerq.schedule``) is installed."""
    try:
        return importlib.util.find_spec("brokerq.schedule") is not None
    except (ImportError, ValueError):
        return False


def _queue(state: State, slug: str) -> Queue:
    for q in state.queues:
        if q.slug == slug:
            return q
    raise HTTPException(404, f"no queue {slug!r}")


def _page(request: Request) -> int:
    try:
        return min(MAX_PAGE, max(0, int(request.query_params.get("page", "0"))))
    except ValueError:
        return 0


async def overview(request: Request) -> Response:
    state = get_state(request)
    return state.render(request, "overview.html", {"cards": await _cards(state)})


async def cards_fragment(request: Request) -> Response:
    state = get_state(request)
    return state.render(request, "_cards.html", {"cards": await _cards(state)})


async def _cards(state: State) -> list[dict[str, Any]]:
    out = []
    for q in state.queues:
        card = await run_in_threadpool(state.sampler.card, q, state.settings.refresh / 2)
        svg, label = state.sampler.chart(q)
        out.append({"q": q, "card": card, "chart": svg, "chart_label": label, "pause": q.can_pause})
    return out


async def queue_page(request: Request) -> Response:
    state = get_state(request)
    q = _queue(state, request.path_params["slug"])
    page, size = _page(request), state.settings.page_size
    card = await run_in_threadpool(state.sampler.card, q, 1.0)
    dead = await run_in_threadpool(
        q.ask, "dead letters", q.broker.dead_letters, (page + 1) * size + 1
    )
    letters = (dead.value or [])[page * size : (page + 1) * size]
    more = len(dead.value or []) > (page + 1) * size
    context = {
        "q": q,
        "card": card,
        "dead": dead,
        "letters": letters,
        "page": page,
        "more": more,
        "chart": state.sampler.chart(q),
    }
    return state.render(request, "queue.html", context)


async def dead_letter_page(request: Request) -> Response:
    state = get_state(request)
    q = _queue(state, request.path_params["slug"])
    ref = request.query_params.get("ref", "")
    answer: Answer[list[DeadLetter]] = await run_in_threadpool(
        q.ask, "dead letter", q.broker.dead_letters, 1, [ref]
    )
    letter = next(iter(answer.value or []), None)
    return state.render(
        request, "dead_letter.html", {"q": q, "ref": ref, "answer": answer, "letter": letter}
    )


async def dead_page(request: Request) -> Response:
    state = get_state(request)
    sections = []
    for q in state.queues:
        answer = await run_in_threadpool(q.ask, "dead letters", q.broker.dead_letters, 20)
        sections.append({"q": q, "answer": answer})
    return state.render(request, "dead.html", {"sections": sections})


async def job_page(request: Request) -> Response:
    state = get_state(request)
    job_id = request.query_params.get("id", "").strip()[:256]
    slug = request.query_params.get("q", "")
    results: list[dict[str, Any]] = []
    if job_id:
        for q in state.queues:
            if slug and q.slug != slug:
                continue
            answer = await run_in_threadpool(q.ask, "job lookup", q.broker.job, job_id)
            results.append({"q": q, "answer": answer})
    found = [r for r in results if r["answer"].value is not None]
    return state.render(
        request, "job.html", {"job_id": job_id, "results": results, "found": found, "slug": slug}
    )


async def workers_page(request: Request) -> Response:
    state = get_state(request)
    sections = []
    for q in state.queues:
        answer = await run_in_threadpool(q.ask, "workers", q.broker.workers)
        sections.append({"q": q, "answer": answer})
    return state.render(request, "workers.html", {"sections": sections, "now": time.time()})


async def schedules_page(request: Request) -> Response:
    state = get_state(request)
    if not has_schedules():
        raise HTTPException(404, "schedules are not available (brokerq.schedule is not installed)")
    from brokerq.web.schedules import describe  # imported only when the scheduler exists

    sections = await run_in_threadpool(describe, state.queues)
    return state.render(request, "schedules.html", {"sections": sections})
