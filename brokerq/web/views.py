"""The pages (GET only). Each page asks the brokers through ``Queue.ask`` in a worker thread,
so a slow or unreachable broker shows as a line on the page, never a crash or a hung loop."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from brokerq.broker import DeadLetter
from brokerq.listing import LIST_STATES
from brokerq.web.queues import Answer, Queue
from brokerq.web.state import State, get_state

T = TypeVar("T")

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


async def each(queues: Sequence[Queue], fn: Callable[[Queue], T]) -> list[T]:
    """``fn(q)`` for every queue, in worker threads at once (one slow broker costs a page
    one ``Queue.ask`` timeout, not one per queue); results in the queues' order."""
    return list(await asyncio.gather(*(run_in_threadpool(fn, q) for q in queues)))


def _page(request: Request, name: str = "page") -> int:
    try:
        return min(MAX_PAGE, max(0, int(request.query_params.get(name, "0"))))
    except ValueError:
        return 0


async def overview(request: Request) -> Response:
    state = get_state(request)
    return state.render(request, "overview.html", {"cards": await _cards(state)})


async def cards_fragment(request: Request) -> Response:
    state = get_state(request)
    return state.render(request, "_cards.html", {"cards": await _cards(state)})


async def _cards(state: State) -> list[dict[str, Any]]:
    cards = await each(state.queues, lambda q: state.sampler.card(q, state.settings.refresh / 2))
    out = []
    for q, card in zip(state.queues, cards, strict=True):
        svg, label = state.sampler.chart(q)
        out.append({"q": q, "card": card, "chart": svg, "chart_label": label, "pause": q.can_pause})
    return out


JOB_TABS = tuple(s for s in LIST_STATES if s != "dead")
"""States listed in the queue page's "jobs by state" (dead letters have their own list)."""


async def queue_page(request: Request) -> Response:
    state = get_state(request)
    q = _queue(state, request.path_params["slug"])
    page, size = _page(request), state.settings.page_size
    tab = request.query_params.get("state", JOB_TABS[0])
    tab = tab if tab in JOB_TABS else JOB_TABS[0]
    jobs_page = _page(request, "jpage")
    card = await run_in_threadpool(state.sampler.card, q, 1.0)
    dead = await run_in_threadpool(
        q.ask, "dead letters", q.broker.dead_letters, (page + 1) * size + 1
    )
    jobs = await run_in_threadpool(
        q.ask, f"{tab} jobs", q.broker.jobs, tab, size + 1, jobs_page * size
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
        "tabs": JOB_TABS,
        "tab": tab,
        "jobs": jobs,
        "job_list": (jobs.value or [])[:size],
        "jobs_page": jobs_page,
        "jobs_more": len(jobs.value or []) > size,
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
    answers = await each(state.queues, lambda q: q.ask("dead letters", q.broker.dead_letters, 20))
    sections = [{"q": q, "answer": a} for q, a in zip(state.queues, answers, strict=True)]
    return state.render(request, "dead.html", {"sections": sections})


async def job_page(request: Request) -> Response:
    state = get_state(request)
    job_id = request.query_params.get("id", "").strip()[:256]
    slug = request.query_params.get("q", "")
    results: list[dict[str, Any]] = []
    if job_id:
        asked = [q for q in state.queues if not slug or q.slug == slug]
        answers = await each(asked, lambda q: q.ask("job lookup", q.broker.job, job_id))
        results = [{"q": q, "answer": a} for q, a in zip(asked, answers, strict=True)]
    found = [r for r in results if r["answer"].value is not None]
    return state.render(
        request,
        "job.html",
        {"job_id": job_id, "results": results, "found": found, "slug": slug, "now": time.time()},
    )


async def workers_page(request: Request) -> Response:
    state = get_state(request)
    answers = await each(state.queues, lambda q: q.ask("workers", q.broker.workers))
    sections = [{"q": q, "answer": a} for q, a in zip(state.queues, answers, strict=True)]
    return state.render(request, "workers.html", {"sections": sections, "now": time.time()})


async def schedules_page(request: Request) -> Response:
    state = get_state(request)
    if not has_schedules():
        raise HTTPException(404, "schedules are not available (brokerq.schedule is not installed)")
    from brokerq.web.schedules import describe  # imported only when the scheduler exists

    sections = await run_in_threadpool(describe, state.queues)
    return state.render(request, "schedules.html", {"sections": sections})
