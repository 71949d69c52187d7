"""Cron fire times around DST, property-tested against a brute-force scan (issue 12).

The scan is the specification written out the slow way (Debian cron, man 8 cron):
- a fixed-time job (minute and hour fields without a leading ``*``) runs at each matching wall
  time once: a repeated wall time at its first pass, a skipped one at the first valid minute
  after the gap;
- any other job runs at every UTC minute whose wall time (as shown then) matches: in both
  passes of a repeated hour, never in a skipped one.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokerq.schedule import Schedule

UTC = timezone.utc
ZONES = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago"]
WILD_HORIZON = timedelta(days=2)
FIXED_HORIZON = timedelta(days=40)


def transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    """UTC instants where ``zone`` changes its offset during ``year`` (hourly scan + bisection)."""
    out = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    step = timedelta(minutes=30)
    while t < end:
        if t.astimezone(zone).utcoffset() != (t + step).astimezone(zone).utcoffset():
            lo, hi = t, t + step
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(zone).utcoffset() == lo.astimezone(zone).utcoffset():
                    lo = mid
                else:
                    hi = mid
            out.append(hi.replace(microsecond=0))
        t += step
    return out


TRANSITIONS = {
    name: transitions(ZoneInfo(name), 2026) + transitions(ZoneInfo(name), 2027) for name in ZONES
}


def test_every_zone_has_two_transitions_a_year() -> None:
    for name, found in TRANSITIONS.items():
        assert len(found) == 4, (name, found)


# -- cron expressions as sets, rendered to text ------------------------------------------------


@st.composite
def fields(
    draw: st.DrawFn, low: int, high: int, max_step: int, list_high: int | None = None
) -> tuple[str, set[int]]:
    kind = draw(st.sampled_from(["star", "step", "list", "list"]))
    values = range(low, high + 1)
    if kind == "star":
        return "*", set(values)
    if kind == "step":
        k = draw(st.integers(2, max_step))
        return f"*/{k}", {v for v in values if (v - low) % k == 0}
    chosen = draw(st.sets(st.integers(low, list_high or high), min_size=1, max_size=3))
    return ",".join(map(str, sorted(chosen))), chosen


@st.composite
def crons(draw: st.DrawFn) -> tuple[str, dict[str, set[int]], bool, bool]:
    minute = draw(fields(0, 59, 30))
    hour = draw(fields(0, 23, 12))
    dom = draw(st.one_of(st.just(("*", set(range(1, 32)))), fields(1, 31, 7, list_high=28)))
    dow = draw(st.one_of(st.just(("*", set(range(7)))), fields(0, 6, 3)))
    text = f"{minute[0]} {hour[0]} {dom[0]} * {dow[0]}"
    sets = {"minute": minute[1], "hour": hour[1], "dom": dom[1], "dow": dow[1]}
    fixed = not minute[0].startswith("*") and not hour[0].startswith("*")
    day_and = dom[0].startswith("*") or dow[0].startswith("*")
    return text, sets, fixed, day_and


def day_matches(d: date, sets: dict[str, set[int]], day_and: bool) -> bool:
    in_dom = d.day in sets["dom"]
    in_dow = (d.weekday() + 1) % 7 in sets["dow"]  # cron: 0 = Sunday
    return (in_dom and in_dow) if day_and else (in_dom or in_dow)


def scan_wall(
    zone: ZoneInfo, sets: dict[str, set[int]], day_and: bool, after: datetime
) -> datetime | None:
    """Every UTC minute after ``after``: does the wall clock shown then match?"""
    u = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = after + WILD_HORIZON
    while u <= end:
        local = u.astimezone(zone)
        if (
            local.minute in sets["minute"]
            and local.hour in sets["hour"]
            and day_matches(local.date(), sets, day_and)
        ):
            return u
        u += timedelta(minutes=1)
    return None


def instant_of(zone: ZoneInfo, wall: datetime) -> datetime:
    """A wall time's instant: its first pass when repeated, the end of the gap when skipped."""
    while True:
        u = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if u.astimezone(zone).replace(tzinfo=None) == wall:
            return u
        wall += timedelta(minutes=1)


def scan_fixed(
    zone: ZoneInfo, sets: dict[str, set[int]], day_and: bool, after: datetime
) -> datetime | None:
    """Every matching wall time of every day around ``after``, mapped to its instant."""
    first = after.astimezone(zone).date() - timedelta(days=1)
    found = []
    for i in range(FIXED_HORIZON.days):
        d = first + timedelta(days=i)
        if not day_matches(d, sets, day_and):
            continue
        for h in sets["hour"]:
            for m in sets["minute"]:
                u = instant_of(zone, datetime(d.year, d.month, d.day, h, m))
                if u > after:
                    found.append(u)
        if found:
            return min(found)
    return None


@st.composite
def near_transition(draw: st.DrawFn) -> tuple[str, datetime]:
    zone = draw(st.sampled_from(ZONES))
    moment = draw(st.sampled_from(TRANSITIONS[zone]))
    seconds = draw(st.integers(-2 * 86400, 86400))
    micro = draw(st.sampled_from([0, 0, 1, 500_000, 999_999]))
    return zone, moment + timedelta(seconds=seconds, microseconds=micro)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cron=crons(), where=near_transition())
def test_next_fire_matches_the_minute_scan(
    cron: tuple[str, dict[str, set[int]], bool, bool], where: tuple[str, datetime]
) -> None:
    text, sets, fixed, day_and = cron
    zone_name, after = where
    zone = ZoneInfo(zone_name)
    schedule = Schedule(name="p", cron=text, timezone=zone_name)
    assert schedule.fixed_time == fixed
    got = schedule.next_fire(after)
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)
    assert got > after
    if fixed:
        want = scan_fixed(zone, sets, day_and, after)
        horizon = after + FIXED_HORIZON - timedelta(days=2)
    else:
        want = scan_wall(zone, sets, day_and, after)
        horizon = after + WILD_HORIZON
    if want is None:
        assert got > horizon, (text, zone_name, after, got)
    else:
        assert got == want, (text, zone_name, after.isoformat(), got.isoformat(), want.isoformat())


@settings(max_examples=100, deadline=None)
@given(cron=crons(), where=near_transition())
def test_consecutive_fires_increase_and_repeat_nothing(
    cron: tuple[str, dict[str, set[int]], bool, bool], where: tuple[str, datetime]
) -> None:
    text, _, _, _ = cron
    zone_name, after = where
    schedule = Schedule(name="p", cron=text, timezone=zone_name)
    times = [schedule.next_fire(after)]
    for _ in range(20):
        times.append(schedule.next_fire(times[-1]))
    assert times == sorted(set(times))


def test_fixed_time_job_in_a_repeated_hour_runs_once() -> None:
    s = Schedule(name="n", cron="30 1 * * *", timezone="America/New_York")
    fires = list(
        s.fires(datetime(2026, 10, 31, 12, tzinfo=UTC), datetime(2026, 11, 2, 12, tzinfo=UTC))
    )
    local = [f.astimezone(s.zone).strftime("%m-%d %H:%M %Z") for f in fires]
    assert local == ["11-01 01:30 EDT", "11-02 01:30 EST"]


def test_fixed_time_job_in_a_skipped_hour_runs_at_the_first_valid_minute() -> None:
    s = Schedule(name="n", cron="30 2 * * *", timezone="Europe/Berlin")
    fires = list(
        s.fires(datetime(2026, 3, 28, 12, tzinfo=UTC), datetime(2026, 3, 30, 12, tzinfo=UTC))
    )
    local = [f.astimezone(s.zone).strftime("%m-%d %H:%M %Z") for f in fires]
    assert local == ["03-29 03:00 CEST", "03-30 02:30 CEST"]


def test_lord_howe_half_hour_shift() -> None:
    s = Schedule(name="n", cron="15 2 * * *", timezone="Australia/Lord_Howe")
    # 2026-10-04 02:00 local jumps to 02:30 (+10:30 -> +11:00)
    fires = list(
        s.fires(datetime(2026, 10, 3, 0, tzinfo=UTC), datetime(2026, 10, 5, 0, tzinfo=UTC))
    )
    local = [f.astimezone(s.zone).strftime("%m-%d %H:%M") for f in fires]
    assert local == ["10-04 02:30", "10-05 02:15"]


def test_wildcard_job_runs_in_both_passes_of_a_repeated_hour() -> None:
    s = Schedule(name="n", cron="0 * * * *", timezone="Europe/Berlin")
    fires = list(
        s.fires(
            datetime(2026, 10, 24, 23, 30, tzinfo=UTC), datetime(2026, 10, 25, 2, 30, tzinfo=UTC)
        )
    )
    # 02:00 CEST, 02:00 CET, 03:00 CET: hourly on elapsed time
    assert [f.strftime("%H:%M") for f in fires] == ["00:00", "01:00", "02:00"]
