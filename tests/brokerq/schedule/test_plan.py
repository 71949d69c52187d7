"""Catch-up planning and the Schedule model (pure: no broker, no clock)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from brokerq.schedule import Schedule, fire_id, fire_time_text, parse_fire_time
from brokerq.schedule.plan import at_start, missed, when_late

UTC = timezone.utc
T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def every(seconds: float, **kw: object) -> Schedule:
    return Schedule.model_validate({"name": "e", "every": seconds, **kw})


def test_every_ticks_are_epoch_multiples_of_the_interval() -> None:
    s = every(900)
    assert s.next_fire(T0) == T0 + timedelta(minutes=15)
    assert s.next_fire(T0 - timedelta(microseconds=1)) == T0
    assert every(0.25).next_fire(T0 + timedelta(seconds=0.3)) == T0 + timedelta(seconds=0.5)


def test_next_fire_wants_an_aware_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        every(1).next_fire(datetime(2026, 1, 1))


def test_next_fire_of_an_aware_non_utc_time_is_utc() -> None:
    berlin = T0.astimezone(timezone(timedelta(hours=1)))
    got = Schedule(name="c", cron="0 * * * *").next_fire(berlin)
    assert got == T0 + timedelta(hours=1) and got.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("catch_up", "fired"),
    [("latest", 1), ("all", 10), ("none", 0)],
)
def test_ten_missed_ticks_at_start(catch_up: str, fired: int) -> None:
    s = every(1, catch_up=catch_up)
    last = T0
    now = T0 + timedelta(seconds=10.5)
    plan = at_start(s, last, now)
    assert plan.count == 10
    assert len(plan.kept) == fired
    if fired:
        assert plan.kept[-1] == T0 + timedelta(seconds=10)
        assert plan.kept == sorted(plan.kept)
    if fired == 10:
        assert plan.kept[0] == T0 + timedelta(seconds=1)


def test_all_is_bounded_by_max_catch_up_keeping_the_most_recent() -> None:
    s = every(1, catch_up="all", max_catch_up=3)
    plan = at_start(s, T0, T0 + timedelta(days=30))
    assert plan.count == 30 * 86400
    assert plan.kept == [T0 + timedelta(days=30, seconds=-2 + i) for i in range(3)]


def test_never_fired_means_nothing_missed() -> None:
    assert at_start(every(1, catch_up="all"), None, T0).kept == []


def test_cron_missed_ticks() -> None:
    s = Schedule(name="c", cron="*/15 * * * *", catch_up="all")
    found = missed(s, T0, T0 + timedelta(hours=1), keep=100)
    assert found.count == 4 and found.kept[-1] == T0 + timedelta(hours=1)


@pytest.mark.parametrize("catch_up", ["latest", "all", "none"])
def test_a_running_scheduler_fires_the_tick_it_waited_for(catch_up: str) -> None:
    s = every(1, catch_up=catch_up)
    plan = when_late(s, T0, T0 + timedelta(milliseconds=3))
    assert plan.count == 1 and plan.kept == [T0]


def test_a_stalled_scheduler_applies_catch_up() -> None:
    late = T0 + timedelta(seconds=3.5)
    assert when_late(every(1, catch_up="all"), T0, late).kept == [
        T0 + timedelta(seconds=i) for i in range(4)
    ]
    assert when_late(every(1, catch_up="none"), T0, late).kept == [T0 + timedelta(seconds=3)]


def test_fire_id_and_fire_time_text() -> None:
    assert fire_time_text(T0) == "2026-12-01T12:00:00Z"
    assert fire_time_text(T0 + timedelta(milliseconds=250)) == "2026-12-01T12:00:00.250Z"
    assert parse_fire_time("2026-12-01T12:00:00Z") == T0
    assert fire_id("orders", "nightly", T0) == "sched:orders:nightly:2026-12-01T12:00:00Z"


def test_jitter_is_deterministic_and_bounded() -> None:
    s = every(60, jitter=10)
    values = [s.jitter_for(T0 + timedelta(minutes=i)) for i in range(50)]
    assert values == [s.jitter_for(T0 + timedelta(minutes=i)) for i in range(50)]
    assert all(0 <= v < 10 for v in values) and len(set(values)) > 40


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"cron": "* * * *"}, "expected 5 fields"),
        ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"cron": "0 2 * * *", "every": "1m"}, "exactly one of cron and every"),
        ({}, "exactly one of cron and every"),
        ({"every": "1s", "value": "a", "json": {"a": 1}}, "value or json"),
        ({"every": "1s", "headers": {"brokerq-fire-time": "x"}}, "set by the scheduler"),
        ({"every": "1s", "jitter": "2s"}, "jitter must be shorter"),
        ({"every": "0s"}, "at least 10ms"),
        ({"every": "1s", "catch_up": "some"}, "latest"),
    ],
)
def test_invalid_schedules(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        Schedule.model_validate({"name": "bad", **fields})


def test_bad_name() -> None:
    with pytest.raises(ValidationError, match="invalid schedule name"):
        Schedule(name="a b", every=1)


def test_body() -> None:
    j = Schedule(name="j", every=1, json={"kind": "nightly"})  # type: ignore[call-arg]  # alias
    assert j.body() == b'{"kind":"nightly"}'
    assert Schedule(name="v", every=1, value="hi").body() == b"hi"
    assert Schedule(name="n", every=1).body() == b""
