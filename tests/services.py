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

import os
import re
import secrets
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

BEANSTALKD_ENDPOINTS = ["127.0.0.1:11300", "127.0.0.1:11301", "127.0.0.1:11302"]
REDIS_URL = "redis://127.0.0.1:6379/0"
KAFKA_BOOTSTRAP = "127.0.0.1:9092"

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


# --------------------------------------------------------------------------- probing


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host or "127.0.0.1", int(port)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def probe(kind: str, host: str, port: int, timeout: float = 2.0) -> bool:
    """True iff a ``kind`` service ("beanstalkd", "redis", "kafka") answers at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            if kind == "beanstalkd":
                s.sendall(b"stats\r\n")
                return _recv_exact(s, 3) == b"OK "
            if kind == "redis":
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                return _recv_exact(s, 5) == b"+PONG"
            if kind == "kafka":
                # ApiVersions v0 request: header v1 (api_key, api_version, correlation, client_id)
                client = b"brokerq-tests"
                msg = struct.pack(">hhih", 18, 0, 7, len(client)) + client
                s.sendall(struct.pack(">i", len(msg)) + msg)
                size = struct.unpack(">i", _recv_exact(s, 4))[0]
                resp = _recv_exact(s, size)
                corr, error = struct.unpack(">ih", resp[:6])
                return bool(corr == 7 and error == 0)
            raise ValueError(f"unknown service kind {kind!r}")
    except (OSError, EOFError, struct.error):
        return False


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
    env = os.environ.get("BROKERQ_BEANSTALKD_ENDPOINTS")
    endpoints = (
        [e.strip() for e in env.split(",") if e.strip()] if env else list(BEANSTALKD_ENDPOINTS)
    )
    down = [e for e in endpoints if not probe("beanstalkd", *split_endpoint(e))]
    if down:
        _unavailable(f"beanstalkd at {', '.join(down)}")
    return endpoints


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis URL, checked to answer PING."""
    url = os.environ.get("BROKERQ_REDIS_URL", REDIS_URL)
    u = urlparse(url)
    if not probe("redis", u.hostname or "127.0.0.1", u.port or 6379):
        _unavailable(f"redis at {url}")
    return url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The Kafka bootstrap servers string, checked to answer an ApiVersions request."""
    bootstrap = os.environ.get("BROKERQ_KAFKA_BOOTSTRAP", KAFKA_BOOTSTRAP)
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
    """A fresh 4-partition topic, deleted after the test."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    fs = admin.create_topics([NewTopic(unique_name, num_partitions=4, replication_factor=1)])
    fs[unique_name].result(timeout=30)
    # wait until every partition has a leader, so producers don't race topic creation
    deadline = time.monotonic() + 30
    while True:
        md = admin.list_topics(topic=unique_name, timeout=10).topics.get(unique_name)
        if (
            md is not None
            and md.error is None
            and len(md.partitions) == 4
            and all(p.leader >= 0 for p in md.partitions.values())
        ):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"kafka topic {unique_name} has no leaders after 30s")
        time.sleep(0.1)
    try:
        yield unique_name
    finally:
        try:
            admin.delete_topics([unique_name], operation_timeout=10)[unique_name].result(timeout=30)
        except Exception:  # best effort: the broker may have been killed by the test
            pass


@pytest.fixture
def beanstalk_tube(beanstalkd_endpoints: list[str], unique_name: str) -> Iterator[str]:
    """A tube name unique to the test; its jobs are deleted on every endpoint afterwards."""
    yield unique_name
    import greenstalk

    for endpoint in beanstalkd_endpoints:
        try:
            with greenstalk.Client(
                split_endpoint(endpoint), use=unique_name, watch=unique_name
            ) as c:
                for peek in (c.peek_ready, c.peek_delayed, c.peek_buried):
                    for _ in range(100_000):
                        try:
                            c.delete(peek())
                        except greenstalk.NotFoundError:
                            break
        except (OSError, greenstalk.Error):  # best effort
            pass


@pytest.fixture
def redis_prefix(redis_url: str, unique_name: str) -> Iterator[str]:
    """A key prefix (``<unique_name>:``); keys starting with it are deleted afterwards."""
    prefix = f"{unique_name}:"
    yield prefix
    import redis

    try:
        client = redis.Redis.from_url(redis_url)
        try:
            keys = list(client.scan_iter(match=f"{unique_name}*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
        finally:
            client.close()
    except redis.RedisError:  # best effort
        pass


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
        pytest.skip(f"{SERVICES_SCRIPT} not found")
    s = Services()
    try:
        yield s
    finally:
        s.ensure_restarted()
