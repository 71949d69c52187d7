"""Shared by the metrics tests: free ports, scraping and parsing an exporter, handlers."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from brokerq.embedded import SqliteBroker
from brokerq.message import Message
from tests.services import services_required

ROOT = Path(__file__).resolve().parents[3]
BROKERQ = str(Path(sys.executable).with_name("brokerq"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 5.0, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    """(status, body) of a GET; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()


def parse(text: str) -> dict[str, Metric]:
    """Families by name, parsed with prometheus_client's own parser."""
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Metric], sample: str, **labels: str) -> float | None:
    """The value of the sample named ``sample`` whose labels include ``labels``."""
    for family in families.values():
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def by_label(families: dict[str, Metric], sample: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in families.values():
        for s in family.samples:
            if s.name == sample:
                out[s.labels[label]] = float(s.value)
    return out


def require_tool(*names: str) -> None:
    """Skip (or fail under CI) when a command the test needs is not installed."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        msg = f"{', '.join(missing)} not installed (scripts/install-prometheus installs it)"
        if services_required():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


def ok_or_fail(msg: Message) -> None:
    """Handler for worker subprocesses: a value of ``fail`` raises, anything else succeeds."""
    if msg.value == b"fail":
        raise RuntimeError("told to fail")
    record = os.environ.get("BQ_RECORD")
    if record:
        with open(record, "a") as f:
            f.write(msg.value.decode() + "\n")


def names_in(families: Iterable[Metric]) -> set[str]:
    return {f.name for f in families}


def push_to(tmp_path: Path, *values: str) -> None:
    with (
        SqliteBroker.from_config({"path": str(tmp_path / "q.db"), "queue": "q"}) as broker,
        broker.producer() as producer,
    ):
        for v in values:
            producer.push(v)


def bq(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [BROKERQ, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )
    assert proc.returncode == 0, proc.stderr
    return proc
