"""Fixtures of the metrics tests: a sqlite worker config with a metrics: section, and the
``brokerq run`` process serving it."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokerq.metrics.helpers import BROKERQ, ROOT, free_port


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def config(tmp_path: Path, port: int) -> Path:
    p = tmp_path / "worker.yaml"
    p.write_text(
        "name: scrape-test\n"
        f"embedded: {{path: '{tmp_path / 'q.db'}', queue: q, visibility_timeout: 2s}}\n"
        "handler: tests.brokerq.metrics.helpers:ok_or_fail\n"
        "concurrency: 2\n"
        "retry: {max_attempts: 2, backoff: 100ms, jitter: false}\n"
        "shutdown_timeout: 10s\n"
        f"metrics: {{listen: '127.0.0.1:{port}', cache: 100ms}}\n"
    )
    return p


@pytest.fixture
def worker(config: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [BROKERQ, "run", str(config)], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
