"""Pytest plugin: fixtures for the real services started by ``scripts/services up``.

Loaded from ``tests/conftest.py`` with ``pytest_plugins = ["tests.services"]``.

Session fixtures (``beanstalkd_endpoints``, ``redis_url``, ``kafka_bootstrap``) check with a
protocol round trip that the service answers. If it does not, the test is skipped -- or
fails, when ``CI=true`` or ``BROKERQ_REQUIRE_SERVICES=1`` -- with a message saying to run
``scripts/services up``.

Per-test fixtures give each test its own namespace (``unique_name``, ``kafka_topic``,
``beanstalk_tube``, ``redis_prefix``) and clean it up afterwards. ``services`` kills and
restarts services for fault tests and restarts anything a test killed.

Client libraries (confluent_kafka, greenstalk, redis) are imported lazily, inside fixtures.

Endpoints can be overridden (e.g. for a Docker setup on other ports) with
``BROKERQ_BEANSTALKD_ENDPOINTS`` (comma separated), ``BROKERQ_REDIS_URL`` and
``BROKERQ_KAFKA_BOOTSTRAP``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from brokerq.testing import servers
from brokerq.testing.servers import probe, split_endpoint

SERVICE_NAMES = ("beanstalkd0", "beanstalkd1", "beanstalkd2", "redis", "kafka")
# the cluster topology (`scripts/services up --cluster`), see tests/cluster/conftest.py
CLUSTER_NAMES = (
    *(f"kafka-c{i}" for i in (1, 2, 3)),
    *(f"redis-c{i}" for i in range(6)),
    "redis-s0",
    "redis-s1",
    *(f"sentinel{i}" for i in range(3)),
    "redis-tls",
    "redis-badhost",
)
REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES_SCRIPT = REPO_ROOT / "scripts" / "services"


# --------------------------------------------------------------------------- availability


def services_required() -> bool:
    return (
        os.environ.get("CI", "").lower() == "true"
        or os.environ.get("BROKERQ_REQUIRE_SERVICES", "") == "1"
    )


def _unavailable(what: str) -> None:
    msg = f"{what} is not reachable; start the test services with `scripts/services up`"
    if services_required():
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def _run_script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SERVICES_SCRIPT), *args],
        check=True,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


# --------------------------------------------------------------------------- session fixtures


@pytest.fixture(scope="session")
def beanstalkd_endpoints() -> list[str]:
    """The three beanstalkd endpoints ("host:port"), checked to answer."""
    endpoints = servers.beanstalkd_endpoints()
    down = [e for e in endpoints if not probe("beanstalkd", *split_endpoint(e))]
    if down:
        _unavailable(f"beanstalkd at {', '.join(down)}")
    return endpoints


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis URL, checked to answer PING."""
    url = servers.redis_url()
    if not probe("redis", *servers.redis_address(url)):
        _unavailable(f"redis at {url}")
    return url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The Kafka bootstrap servers string, checked to answer an ApiVersions request."""
    bootstrap = servers.kafka_bootstrap()
    first = bootstrap.split(",")[0].strip()
    if not probe("kafka", *split_endpoint(first)):
        _unavailable(f"kafka at {bootstrap}")
    return bootstrap


# --------------------------------------------------------------------------- per-test namespaces


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A short random name like ``t-test-foo-1a2b3c4d`` ([a-z0-9-] only).

    Valid as a Kafka topic, a beanstalkd tube and a Redis key prefix.
    """
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:24].strip("-")
    return f"t-{base or 'x'}-{secrets.token_hex(4)}"


@pytest.fixture
def kafka_topic(kafka_bootstrap: str, unique_name: str) -> Iterator[str]:
    """A fresh 4-partition topic, deleted after the test with its pause-flag topic (made by
    workers and dashboards: brokerq_kafka.control)."""
    servers.create_topic(kafka_bootstrap, unique_name, partitions=4)
    try:
        yield unique_name
    finally:  # best effort: the broker may have been killed by the test
        servers.delete_topics(kafka_bootstrap, [unique_name, f"{unique_name}.brokerq-control"])


@pytest.fixture
def beanstalk_tube(beanstalkd_endpoints: list[str], unique_name: str) -> Iterator[str]:
    """A tube name unique to the test; its jobs are deleted on every endpoint afterwards."""
    yield unique_name
    servers.drain_tube(beanstalkd_endpoints, unique_name, timeout=30)  # best effort


@pytest.fixture
def redis_prefix(redis_url: str, unique_name: str) -> Iterator[str]:
    """A key prefix (``<unique_name>:``); keys starting with it are deleted afterwards."""
    prefix = f"{unique_name}:"
    yield prefix
    import redis

    with contextlib.suppress(redis.RedisError):  # best effort
        servers.delete_redis_prefix(redis_url, unique_name)


# --------------------------------------------------------------------------- fault injection


class Services:
    """Kill / restart the services managed by ``scripts/services`` (fault tests)."""

    def __init__(self) -> None:
        self.killed: set[str] = set()

    @staticmethod
    def _check(name: str) -> None:
        if name not in SERVICE_NAMES + CLUSTER_NAMES:
            raise ValueError(f"unknown service {name!r}; expected one of {SERVICE_NAMES}")

    def kill(self, name: str) -> None:
        """SIGKILL the service (it stays down until ``restart``)."""
        self._check(name)
        self.killed.add(name)
        _run_script("kill", name)

    def restart(self, name: str) -> None:
        """Start the service again (killed or not) and wait until it answers."""
        self._check(name)
        _run_script("restart", name)
        self.killed.discard(name)

    def status(self) -> str:
        return _run_script("status").stdout

    def ensure_restarted(self) -> None:
        errors: list[str] = []
        for name in sorted(self.killed):
            try:
                self.restart(name)
            except subprocess.SubprocessError as e:
                out = getattr(e, "stderr", "") or ""
                errors.append(f"{name}: {e}\n{out}")
        if errors:
            raise RuntimeError("could not restart killed services:\n" + "\n".join(errors))


@pytest.fixture
def services() -> Iterator[Services]:
    """``services.kill(name)`` / ``services.restart(name)``; anything killed is restarted after."""
    if not SERVICES_SCRIPT.exists():
        _unavailable(str(SERVICES_SCRIPT))  # a failure under CI, a skip otherwise
    s = Services()
    try:
        yield s
    finally:
        s.ensure_restarted()
