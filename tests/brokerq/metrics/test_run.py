"""``brokerq run`` with a metrics: section, scraped over HTTP like Prometheus would."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.brokerq.metrics.helpers import (
    BROKERQ,
    ROOT,
    bq,
    by_label,
    free_port,
    get,
    parse,
    push_to,
    value,
)
from tests.contract import wait_for


def scrape(port: int) -> dict[str, float]:
    try:
        status, body = get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    except OSError:
        return {}
    assert status == 200
    return by_label(parse(body), "brokerq_messages_processed_total", "outcome")


def states(stats: dict[str, float]) -> dict[str, float]:
    """The ``stats()`` keys exported as ``brokerq_queue_messages{state}`` (brokerq.metrics.
    broker_state: plain keys but the age and the paused flag)."""
    return {
        k: v for k, v in stats.items() if ":" not in k and k not in ("oldest_age_seconds", "paused")
    }


def test_scrape_counts_outcomes_and_depth_matches_stats(
    tmp_path: Path, config: Path, port: int, worker: subprocess.Popen[str]
) -> None:
    push_to(tmp_path, *(f"ok{i}" for i in range(5)), "fail")
    assert wait_for(lambda: scrape(port).get("ok") == 5 and scrape(port).get("dead") == 1, 60)
    assert scrape(port) == {"ok": 5.0, "retry": 1.0, "dead": 1.0}

    def depth() -> dict[str, float]:
        return by_label(
            parse(get(f"http://127.0.0.1:{port}/metrics")[1]), "brokerq_queue_messages", "state"
        )

    stats = {k: float(v) for k, v in json.loads(bq("stats", str(config), "--json").stdout).items()}
    assert stats["dead"] == 1 and stats["pending"] == 0
    assert stats["paused"] == 0
    assert wait_for(lambda: depth() == states(stats), 10), (depth(), stats)

    assert get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
    assert get(f"http://127.0.0.1:{port}/readyz") == (200, "ok\n")

    # brokerq stats --watch reads the worker's exporter too; plain lines when piped
    out = bq("stats", str(config), "--watch", "--interval", "100ms", "--count", "2").stdout
    lines = out.splitlines()
    assert len(lines) == 2, out
    assert "dead=1" in lines[1] and "ok=5 (+0.0/s)" in lines[1] and "\x1b[" not in out
    rows = [
        json.loads(x)
        for x in bq(
            "stats", str(config), "--watch", "--json", "--interval", "100ms", "--count", "2"
        ).stdout.splitlines()
    ]
    assert rows[1]["processed"] == {"ok": 5.0, "retry": 1.0, "dead": 1.0}
    assert rows[1]["stats"] == stats | {"paused": 0} and rows[1]["rates"]["dead"] == 0.0


def test_sigterm_stops_serving(port: int, worker: subprocess.Popen[str]) -> None:
    assert wait_for(
        lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200 if _up(port) else False, 30
    )
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert not _up(port)


def free_port_pair() -> int:
    """A port p with p + 1 free too (for two supervised workers)."""
    for _ in range(50):
        p = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no two consecutive free ports")


def _up(port: int) -> bool:
    try:
        get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        return True
    except OSError:
        return False


def test_taken_port_is_one_line_and_exit_3(config: Path, port: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        proc = subprocess.run(
            [BROKERQ, "run", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
    assert proc.returncode == 3
    err = [line for line in proc.stderr.splitlines() if "error" in line]
    assert err == [
        f"brokerq: error: metrics.listen 127.0.0.1:{port}: cannot listen: [Errno 98] Address already in use"
    ]
    assert "Traceback" not in proc.stderr


def test_watch_on_a_terminal_draws_a_live_table(tmp_path: Path, config: Path) -> None:
    import os
    import pty

    push_to(tmp_path, "a", "b")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [BROKERQ, "stats", str(config), "--watch", "--interval", "100ms", "--count", "3"],
        cwd=ROOT,
        stdout=slave,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
    )
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    screen = b"".join(chunks).decode(errors="replace")
    assert "scrape-test (sqlite)" in screen
    assert "pending" in screen and "per second" in screen and "│" in screen
    assert "unreachable" in screen  # no worker runs: said in the caption, not an error


@pytest.mark.integration
def test_kq_worker_scrape_matches_stats_and_shows_no_secret(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
) -> None:
    from brokerq_kafka.broker import KafkaBroker

    secret = "s3cret-pw-0042"
    port = free_port()
    config = tmp_path / "kq.yaml"
    config.write_text(
        "name: kq-scrape\n"
        f"kq: {{brokers: ['{kafka_bootstrap}'], topic: {kafka_topic}, group: {kafka_topic},\n"
        f"     offset: first, client_config: {{sasl.password: '{secret}'}}}}\n"
        "handler: tests.brokerq.metrics.helpers:ok_or_fail\n"
        "concurrency: 2\n"
        "retry: {max_attempts: 2, backoff: 100ms, jitter: false}\n"
        f"metrics: {{listen: '127.0.0.1:{port}', cache: 100ms}}\n"
    )
    kq = {"brokers": [kafka_bootstrap], "topic": kafka_topic, "group": kafka_topic}
    with KafkaBroker.from_config(kq) as broker, broker.producer() as producer:
        for i in range(5):
            producer.push(f"ok{i}")
        producer.push("fail")
        producer.flush(30)
    proc = subprocess.Popen(
        [BROKERQ, "run", str(config)], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_for(lambda: scrape(port).get("ok") == 5 and scrape(port).get("dead") == 1, 90)
        assert scrape(port) == {"ok": 5.0, "retry": 1.0, "dead": 1.0}
        stats = {
            k: float(v) for k, v in json.loads(bq("stats", str(config), "--json").stdout).items()
        }
        stats.pop("paused", None)  # the pause flag is not a message count

        def depth() -> dict[str, float]:
            body = get(f"http://127.0.0.1:{port}/metrics")[1]
            return by_label(parse(body), "brokerq_queue_messages", "state")

        assert wait_for(lambda: depth() == states(stats), 30), (depth(), stats)
        assert stats["dead"] == 1
        for path in ("/metrics", "/healthz", "/readyz"):
            status, body = get(f"http://127.0.0.1:{port}{path}")
            assert status == 200 and secret not in body, path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
            assert proc.stderr is not None
            err = proc.stderr.read()
            proc.stderr.close()
    assert secret not in err


def test_each_supervised_process_serves_its_own_port(tmp_path: Path, config: Path) -> None:
    port = free_port_pair()
    config.write_text(re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", config.read_text()))
    proc = subprocess.Popen(
        [BROKERQ, "run", str(config), "--processes", "2"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: _up(port) and _up(port + 1), 60)
        push_to(tmp_path, *(f"m{i}" for i in range(20)))

        def total() -> float:
            return sum(scrape(p).get("ok", 0.0) for p in (port, port + 1))

        assert wait_for(lambda: total() == 20, 60), total()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            assert proc.stderr is not None
            proc.stderr.close()
    assert not _up(port) and not _up(port + 1)


def test_a_running_schedule_reports_its_fires(tmp_path: Path, port: int) -> None:
    config = tmp_path / "sched.yaml"
    config.write_text(
        "name: sched-test\n"
        f"embedded: {{path: '{tmp_path / 's.db'}', queue: s}}\n"
        "handler: tests.brokerq.metrics.helpers:ok_or_fail\n"
        "schedules:\n  - name: tick\n    every: 1s\n"
        f"metrics: {{listen: '127.0.0.1:{port}', cache: 100ms}}\n"
    )
    proc = subprocess.Popen(
        [BROKERQ, "run", str(config)], cwd=ROOT, stderr=subprocess.DEVNULL, text=True
    )

    def fires() -> dict[str, Any]:
        try:
            return parse(get(f"http://127.0.0.1:{port}/metrics", timeout=2)[1])
        except OSError:
            return {}

    def fired(families: dict[str, Any]) -> float:
        return value(families, "brokerq_schedule_fires_total", schedule="tick", outcome="ok") or 0

    try:
        assert wait_for(lambda: fired(fires()) >= 2, 30)
        families = fires()
        last = value(families, "brokerq_schedule_last_fire_timestamp_seconds", schedule="tick")
        assert last is not None and last == int(last)  # `every: 1s` ticks on whole seconds
        late = value(families, "brokerq_schedule_fire_lateness_seconds_count", schedule="tick")
        assert late is not None and late >= 2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
