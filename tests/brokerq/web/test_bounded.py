"""Every broker call of a page is time-bounded and the overview asks all brokers at once: a
hanging broker shows "slow" on its card instead of holding the page (issue 14), an unreachable
one "unreachable"."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brokerq.web.queues import Queue
from tests.brokerq.web.conftest import client_for


@pytest.fixture
def release() -> Iterator[threading.Event]:
    gate = threading.Event()
    yield gate
    gate.set()  # let the hung calls finish so the brokers close


def two_queues(make_config: Callable[..., Path], open_: Callable[..., list[Queue]]) -> list[Queue]:
    return open_(make_config("memory", name="a"), make_config("memory", name="b"))


def test_the_overview_asks_every_broker_at_once(
    make_config: Callable[..., Path], queues_for: Callable[..., list[Queue]]
) -> None:
    qs = two_queues(make_config, queues_for)
    both = threading.Barrier(2, timeout=5)

    def meet() -> dict[str, int]:
        both.wait()  # passes only when both brokers are asked at the same time
        return {"pending": 7}

    for q in qs:
        q.broker.stats = meet  # type: ignore[method-assign]
    client = client_for(qs, call_timeout=20.0)
    html = client.get("/").text
    assert html.count("<dd>7</dd>") == 2, html
    assert "unreachable" not in html


def test_a_hanging_broker_is_slow_and_costs_one_timeout(
    make_config: Callable[..., Path],
    queues_for: Callable[..., list[Queue]],
    release: threading.Event,
) -> None:
    slow, fine = two_queues(make_config, queues_for)
    calls: list[str] = []

    def hang() -> dict[str, int]:
        calls.append("stats")
        release.wait(60)
        return {}

    def never(*args: object) -> object:
        calls.append("other")
        raise AssertionError("asked again after stats did not answer")

    slow.broker.stats = hang  # type: ignore[method-assign]
    slow.broker.workers = never  # type: ignore[method-assign,assignment]
    slow.broker.is_paused = never  # type: ignore[method-assign,assignment]
    with fine.broker.producer() as p:
        p.push(b"x")
    client = client_for([slow, fine], call_timeout=0.5)
    r = client.get("/")  # would hang until release without the bound
    assert r.status_code == 200
    card_slow, card_fine = r.text.split('data-queue="a"')[1].split('data-queue="b"')
    # it did not refuse: "slow", not "unreachable" (a first load once said "unreachable")
    assert ">slow</span>" in card_slow and "slow: stats: no answer within 0.5 s yet" in card_slow
    assert "unreachable" not in card_slow
    assert "slow" not in card_fine and "<dd>1</dd>" in card_fine
    assert calls == ["stats"]
    # the call still hangs: the next page does not start another one behind it, and says so
    # the same way (it once said "unreachable: stats: an earlier call has not answered yet")
    page = client.get("/q/a")
    assert page.status_code == 200 and "slow: stats: no answer within 0.5 s yet" in page.text
    assert "unreachable" not in page.text and "earlier call" not in page.text
    assert calls == ["stats"]


def test_an_unreachable_kafka_is_a_line_on_its_card(
    tmp_path: Path, queues_for: Callable[..., list[Queue]]
) -> None:
    cfg = tmp_path / "down.yaml"
    cfg.write_text(
        "name: down\nhandler: a:b\n"
        "kq: {brokers: ['127.0.0.1:1'], topic: t, group: g,"
        " client_config: {socket.connection.setup.timeout.ms: 1000}}\n"
    )
    # librdkafka takes longer than 1 s to give up on a refused broker: the card says "slow"
    client = client_for(queues_for(cfg), call_timeout=1.0)
    html = client.get("/").text
    assert ">slow</span>" in html and "slow: stats: no answer within 1 s yet" in html
