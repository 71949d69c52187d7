"""A real Prometheus server scrapes a ``brokerq run`` worker; promtool accepts the alert rules."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokerq.metrics.helpers import push_to, require_tool
from tests.brokerq.metrics.promserver import PrometheusServer
from tests.contract import wait_for

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "contrib" / "prometheus" / "alerts.yml"


def test_promtool_accepts_the_alert_rules_and_their_unit_tests() -> None:
    require_tool("promtool")
    check = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 6 rules found" in check.stdout
    unit = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yml"],
        cwd=ALERTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr


@pytest.fixture
def prometheus(tmp_path: Path, port: int) -> Iterator[PrometheusServer]:
    require_tool("prometheus")
    workdir = tmp_path / "prom"
    workdir.mkdir()
    server = PrometheusServer(workdir, [f"127.0.0.1:{port}"], rule_files=[ALERTS])
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_prometheus_scrapes_a_worker_and_answers_promql(
    tmp_path: Path,
    worker: subprocess.Popen[str],
    prometheus: PrometheusServer,
) -> None:
    push_to(tmp_path, *(f"ok{i}" for i in range(5)), "fail")

    def processed() -> dict[str, float]:
        rows = prometheus.query(
            'sum by (outcome) (brokerq_messages_processed_total{job="brokerq"})'
        )
        return {r["metric"]["outcome"]: float(r["value"][1]) for r in rows}

    assert wait_for(lambda: processed() == {"ok": 5.0, "retry": 1.0, "dead": 1.0}, 60), processed()
    rows = prometheus.query('brokerq_queue_messages{state="dead"}')
    assert [(r["metric"]["worker"], r["metric"]["queue"], r["value"][1]) for r in rows] == [
        ("scrape-test", "q", "1")
    ]

    # the alert rules load and evaluate against the real series without errors
    def rules_evaluated() -> bool:
        groups = prometheus.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return len(rules) == 6 and all(r["health"] == "ok" for r in rules)

    assert wait_for(rules_evaluated, 30), prometheus.api("rules")
