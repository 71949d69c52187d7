"""brokerq.metrics.live: samples with rates, plain lines, JSON lines, the rich table."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping

from rich.console import Console

from brokerq.metrics.config import MetricsConf
from brokerq.metrics.live import Sample, plain_line, samples, show, table, worker_url
from tests.brokerq.metrics.helpers import free_port


class Counts:
    """A stats() whose pending count drops by 10 per call."""

    def __init__(self) -> None:
        self.pending = 100

    def __call__(self) -> Mapping[str, float]:
        self.pending -= 10
        return {"pending": self.pending, "dead": 1}


def test_rates_between_samples() -> None:
    got = list(samples(Counts(), None, 0.05, count=3))
    assert [s.counts["pending"] for s in got] == [90, 80, 70]
    assert got[0].rates == {}
    for s in got[1:]:
        assert s.rates["pending"] < 0 and s.rates["dead"] == 0.0


def test_unreachable_worker_is_reported_not_raised() -> None:
    conf = MetricsConf(listen=str(free_port()))  # nothing listens there
    (s,) = samples(Counts(), conf, 0.05, count=1)
    assert s.processed is None
    assert s.worker_error.startswith(
        f"worker exporter http://127.0.0.1:{conf.port}/metrics unreachable"
    )


def test_plain_line_and_json() -> None:
    s = Sample(0.0, {"pending": 3.0, "dead": 1.0}, {"ok": 5.0}, rates={"pending": 1.5})
    assert plain_line(s) == "1970-01-01T00:00:00Z pending=3 (+1.5/s) dead=1 ok=5"
    assert s.as_json() == {
        "time": 0.0,
        "stats": {"pending": 3.0, "dead": 1.0},
        "rates": {"pending": 1.5},
        "processed": {"ok": 5.0},
    }


def test_show_once_plain_and_json() -> None:
    out = io.StringIO()
    show(lambda: {"pending": 2, "dead": 0}, out=out)
    assert out.getvalue() == "pending      2\ndead         0\n"
    out = io.StringIO()
    show(lambda: {"pending": 2}, as_json=True, out=out)
    assert json.loads(out.getvalue()) == {"pending": 2}


def test_watch_on_a_pipe_is_plain_and_json_lines() -> None:
    out = io.StringIO()
    show(Counts(), watch=True, interval=0.01, count=2, out=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "pending=80 (" in lines[1] and "\x1b" not in out.getvalue()
    out = io.StringIO()
    show(Counts(), watch=True, as_json=True, interval=0.01, count=2, out=out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rows[1]["stats"]["pending"] == 80 and rows[1]["rates"]["pending"] < 0


def test_rich_table_renders_counts_and_rates() -> None:
    s = Sample(0.0, {"pending": 3.0}, {"ok": 5.0}, rates={"pending": -2.0, "processed_ok": 4.0})
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(table(s, "orders (sqlite)"))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "orders (sqlite)" in text
    assert "pending" in text and "-2.0/s" in text and "processed ok" in text and "+4.0/s" in text


def test_worker_url_from_every_interface_is_loopback() -> None:
    assert worker_url(MetricsConf(listen="0.0.0.0:9464")) == "http://127.0.0.1:9464/metrics"
    assert worker_url(MetricsConf(listen="[::]:9464")) == "http://[::1]:9464/metrics"
    tls = MetricsConf(listen="9464", certfile="c", keyfile="k")
    assert worker_url(tls) == "https://127.0.0.1:9464/metrics"


def test_a_broker_blip_does_not_end_the_watch() -> None:
    from brokerq.errors import ConnectionFailed

    calls = iter([{"pending": 5}, ConnectionFailed("redis://u:pw@h:1 refused"), {"pending": 3}])

    def flaky() -> Mapping[str, float]:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        assert isinstance(item, dict)
        return item

    got = list(samples(flaky, None, 0.01, count=3))
    assert got[1].counts == {"pending": 5.0} and got[1].broker_error == "redis://u:***@h:1 refused"
    assert got[2].counts == {"pending": 3.0} and not got[2].broker_error
    assert "[redis://u:***@h:1 refused]" in plain_line(got[1])


def test_watch_json_counts_are_ints_as_in_plain_json() -> None:
    out = io.StringIO()
    show(Counts(), watch=True, as_json=True, interval=0.01, count=1, out=out)
    assert '"pending": 90}' in out.getvalue() and "90.0" not in out.getvalue()
    assert json.loads(out.getvalue())["stats"] == {"pending": 90, "dead": 1}


def test_gauges_get_no_rate() -> None:
    ages = iter([5, 7])

    def stats() -> Mapping[str, float]:
        return {"pending": 1, "paused": 1, "oldest_age_seconds": next(ages)}

    _first, second = samples(stats, None, 0.01, count=2)
    assert second.rates.keys() == {"pending"}
    assert "paused=1 " in plain_line(second) and "(" not in plain_line(second).split("paused")[1]
