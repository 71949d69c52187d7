"""Every page renders for memory, sqlite, kq and dq configs over queues holding real jobs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from brokerq.web.queues import Queue
from tests.brokerq.web.conftest import KINDS, client_for, fill

PAGES = ["/", "/fragments/cards", "/q/jobs", "/dead", "/workers", "/job?id=nope"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_page_renders(
    kind: str, make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    (q,) = queues_for(make_config(kind))
    dead_id = fill(q.broker)
    client = client_for([q])
    for page in PAGES:
        r = client.get(page)
        assert r.status_code == 200, (page, r.text[:500])
        assert "Traceback" not in r.text
    overview = client.get("/").text
    assert f">{q.kind}<" in overview and q.target in overview
    assert "<script>alert" not in overview

    queue_page = client.get("/q/jobs").text
    refs = re.findall(r'data-ref="([^"]+)"', queue_page)
    assert refs, queue_page
    # the dead letter: escaped payload, masked secret header, its error
    letter = client.get("/q/jobs/dead", params={"ref": refs[0]})
    assert letter.status_code == 200
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in letter.text
    assert "<script>alert" not in letter.text
    assert "hunter2" not in letter.text and "x-api-token" in letter.text
    assert "bad &lt;b&gt;input&lt;/b&gt;" in letter.text
    # the job by id: found where the backend can look jobs up, else a "not supported" line
    job = client.get("/job", params={"id": dead_id}).text
    assert "<script>alert" not in job
    assert ("state-dead" in job) or ("not supported" in job), job


@pytest.mark.parametrize("kind", KINDS)
def test_counts_on_the_overview(
    kind: str, make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    (q,) = queues_for(make_config(kind))
    fill(q.broker, pending=3)
    stats = q.broker.stats()
    html = client_for([q]).get("/fragments/cards").text
    cells = dict(re.findall(r"<dt>([a-z ]+)</dt><dd[^>]*>(?:<a [^>]*>)?([^<]+)<", html))
    assert cells["dead"] == f"{stats['dead']:,}" and stats["dead"] >= 1
    assert cells["pending"] == f"{stats['pending']:,}"


def test_unknown_queue_is_404(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    client = client_for(queues_for(make_config("memory")))
    assert client.get("/q/nope").status_code == 404


def test_schedules_page_only_with_the_scheduler(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    from brokerq.web.views import has_schedules

    client = client_for(queues_for(make_config("memory")))
    nav = client.get("/").text
    if has_schedules():
        assert 'href="/schedules"' in nav
        assert client.get("/schedules").status_code == 200
    else:
        assert 'href="/schedules"' not in nav
        assert client.get("/schedules").status_code == 404


def test_an_unreachable_broker_is_a_line_not_a_crash(
    tmp_path: Path, queues_for: Callable[..., list[Queue]]
) -> None:
    cfg = tmp_path / "down.yaml"
    cfg.write_text(
        "name: down\nhandler: a:b\ndq:\n  beanstalks: [{endpoint: '127.0.0.1:1', tube: t}]\n"
        "  redis: {url: 'redis://127.0.0.1:1/0'}\n"
    )
    client = client_for(queues_for(cfg))
    for page in PAGES:
        r = client.get(page.replace("/q/jobs", "/q/down"))
        assert r.status_code == 200, page
    assert "127.0.0.1:1" in client.get("/dead").text


def test_dead_letters_are_paged(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    from brokerq.outcome import Failure

    (q,) = queues_for(make_config("memory"))
    with q.broker.producer() as p:
        for i in range(12):
            p.push(f"job {i}")
    with q.broker.source() as s:
        for _ in range(12):
            d = s.receive(5)
            assert d is not None
            s.dead(d, Failure("Boom", "x"))
    client = client_for([q], page_size=5)
    pages = [client.get("/q/jobs", params={"page": n}).text for n in range(3)]
    rows = [re.findall(r'data-ref="([^"]+)"', page) for page in pages]
    assert [len(r) for r in rows] == [5, 5, 2]
    assert len({ref for r in rows for ref in r}) == 12
    assert "next page" in pages[0] and "next page" not in pages[2]
    assert "previous page" in pages[1] and "previous page" not in pages[0]
