"""``brokerq stats``: the broker's counts once, as JSON, or live with rates per second.

    brokerq stats CONFIG                 one table: pending, delayed, in_flight, dead
    brokerq stats CONFIG --json          the same as one JSON object
    brokerq stats CONFIG --watch         a live table (rich) refreshed every second; plain
                                         lines when stdout is not a terminal
    brokerq stats CONFIG --watch --json  one JSON object per refresh (JSON lines)

With ``--watch``, each count gets its change per second since the previous refresh. When the
config has a ``metrics:`` section, the worker's own exporter is read too (``/metrics`` at its
``listen`` address) for messages processed by outcome and their rates; a worker that is not
running shows as unreachable. rich and prometheus-client are imported only when needed.
"""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any

from brokerq.errors import BrokerError
from brokerq.metrics.config import MetricsConf
from brokerq.metrics.redact import redact

SCRAPE_TIMEOUT = 0.5
OUTCOMES = ("ok", "retry", "dead")
MIN_INTERVAL = 0.1  # seconds: a shorter --watch period would poll the broker in a tight loop
# gauges, not counters: their change per second means nothing, so no rate is shown for them
GAUGES = frozenset({"paused", "oldest_age_seconds"})


@dataclass
class Sample:
    """One refresh: broker counts, the worker's processed totals (if reachable), and rates."""

    at: float
    counts: dict[str, float]
    processed: dict[str, float] | None = None
    worker_error: str = ""
    broker_error: str = ""
    rates: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": self.at, "stats": self.counts, "rates": self.rates}
        if self.processed is not None:
            out["processed"] = self.processed
        if self.worker_error:
            out["worker_error"] = self.worker_error
        if self.broker_error:
            out["broker_error"] = self.broker_error
        return out


def worker_url(conf: MetricsConf) -> str:
    """Where the worker's exporter is reached from this machine (every-interface → loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(conf.host, conf.host)
    scheme = "https" if conf.tls else "http"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{conf.port}/metrics"


def scrape_processed(url: str, timeout: float = SCRAPE_TIMEOUT) -> dict[str, float]:
    """``brokerq_messages_processed_total`` by outcome from an exporter; raise OSError/ValueError."""
    from prometheus_client.parser import text_string_to_metric_families

    context = ssl.create_default_context() if url.startswith("https") else None
    with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
        text = response.read().decode()
    totals = dict.fromkeys(OUTCOMES, 0.0)
    for family in text_string_to_metric_families(text):
        if family.name == "brokerq_messages_processed":
            for s in family.samples:
                if s.name.endswith("_total"):
                    outcome = s.labels.get("outcome", "")
                    totals[outcome] = totals.get(outcome, 0.0) + s.value
    return totals


def samples(
    stats: Callable[[], Mapping[str, float]],
    metrics: MetricsConf | None,
    interval: float,
    count: int | None = None,
) -> Iterator[Sample]:
    """Take a sample every ``interval`` seconds (``count`` times, or forever) with rates."""
    url = worker_url(metrics) if metrics is not None else None
    previous: Sample | None = None
    taken = 0
    while count is None or taken < count:
        if previous is not None:
            time.sleep(max(0.0, previous.at + interval - time.time()))
        try:
            sample = Sample(time.time(), {k: _exact(v) for k, v in stats().items()})
        except BrokerError as e:  # a blip must not end a watch: say so, keep the last counts
            last = dict(previous.counts) if previous is not None else {}
            sample = Sample(time.time(), last, broker_error=redact(str(e)))
        if url is not None:
            try:
                sample.processed = {k: _exact(v) for k, v in scrape_processed(url).items()}
            except ImportError:
                sample.worker_error = "prometheus-client not installed"
            except (OSError, ValueError) as e:
                sample.worker_error = f"worker exporter {url} unreachable: {redact(str(e))}"
        if previous is not None:
            dt = max(sample.at - previous.at, 1e-6)
            for k, v in sample.counts.items():
                if k not in GAUGES:
                    sample.rates[k] = (v - previous.counts.get(k, v)) / dt
            if sample.processed is not None and previous.processed is not None:
                for k, v in sample.processed.items():
                    sample.rates[f"processed_{k}"] = (v - previous.processed.get(k, v)) / dt
        yield sample
        previous = sample
        taken += 1


def _exact(v: float) -> float:
    """A whole number as an int (JSON ``3``, as ``stats --json`` prints it, not ``3.0``)."""
    return int(v) if float(v).is_integer() else float(v)


def _num(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"


def _rate(v: float | None) -> str:
    return "" if v is None else f"{v:+.1f}/s"


def plain_line(sample: Sample) -> str:
    """``<UTC time> pending=3 (+1.0/s) ... ok=5 (+5.0/s) ...`` for logs and pipes."""
    stamp = datetime.fromtimestamp(sample.at, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    parts = [stamp]
    for k, v in sample.counts.items():
        rate = sample.rates.get(k)
        parts.append(f"{k}={_num(v)}" + (f" ({_rate(rate)})" if rate is not None else ""))
    for k, v in (sample.processed or {}).items():
        rate = sample.rates.get(f"processed_{k}")
        parts.append(f"{k}={_num(v)}" + (f" ({_rate(rate)})" if rate is not None else ""))
    for note in (sample.broker_error, sample.worker_error):
        if note:
            parts.append(f"[{note}]")
    return " ".join(parts)


def table(sample: Sample, title: str) -> Any:
    """A rich Table of one sample (rich imported here only)."""
    from rich.table import Table

    caption = "; ".join(n for n in (sample.broker_error, sample.worker_error) if n)
    t = Table(title=title, caption=caption or None)
    t.add_column("")
    t.add_column("count", justify="right")
    t.add_column("per second", justify="right")
    for k, v in sample.counts.items():
        t.add_row(k, _num(v), _rate(sample.rates.get(k)))
    for k, v in (sample.processed or {}).items():
        t.add_row(f"processed {k}", _num(v), _rate(sample.rates.get(f"processed_{k}")))
    return t


def show(
    stats: Callable[[], Mapping[str, float]],
    *,
    metrics: MetricsConf | None = None,
    title: str = "brokerq",
    as_json: bool = False,
    watch: bool = False,
    interval: float = 1.0,
    count: int | None = None,
    out: IO[str] | None = None,
) -> None:
    """Print stats once, or every ``interval`` seconds until Ctrl-C (or ``count`` refreshes)."""
    out = out or sys.stdout
    if not watch:
        counts = dict(stats())
        if as_json:
            print(json.dumps(counts, sort_keys=True), file=out)
        else:
            for name, value in counts.items():
                print(f"{name:<12} {value}", file=out)
        return
    stream = samples(stats, metrics, interval, count)
    try:
        if as_json:
            for s in stream:
                print(json.dumps(s.as_json(), sort_keys=True), file=out, flush=True)
        elif out.isatty() and _has_rich():
            _live(stream, title, out)
        else:
            for s in stream:
                print(plain_line(s), file=out, flush=True)
    except KeyboardInterrupt:
        pass


def _has_rich() -> bool:
    """rich draws the live table; without it (no ``metrics`` extra) the lines stay plain."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _live(stream: Iterator[Sample], title: str, out: IO[str]) -> None:
    from rich.console import Console
    from rich.live import Live

    first = next(stream)
    with Live(
        table(first, title), console=Console(file=out), auto_refresh=False, transient=False
    ) as live:
        for s in stream:
            live.update(table(s, title), refresh=True)
