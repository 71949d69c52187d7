"""MetricsServer over real HTTP(S) on loopback."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from brokerq.errors import ConfigError
from brokerq.metrics.config import MetricsConf
from brokerq.metrics.server import MetricsServer
from tests.brokerq.metrics.helpers import free_port, get, parse, require_tool, value


@pytest.fixture
def registry() -> CollectorRegistry:
    r = CollectorRegistry()
    Counter("brokerq_test_things", "things", registry=r).inc(3)
    return r


@pytest.fixture
def server(registry: CollectorRegistry) -> Iterator[MetricsServer]:
    s = MetricsServer(
        MetricsConf(listen=str(free_port())),
        registry,
        health=lambda: (True, "ok"),
        ready=lambda: (False, "broker: redis://app:hunter2@10.0.0.1:6379/0 refused"),
    )
    s.start()
    try:
        yield s
    finally:
        s.close()


def test_metrics_health_ready_and_404(server: MetricsServer) -> None:
    status, body = get(server.url + "/metrics")
    assert status == 200
    assert value(parse(body), "brokerq_test_things_total") == 3
    assert get(server.url + "/healthz") == (200, "ok\n")
    status, body = get(server.url + "/readyz")
    assert status == 503
    assert "hunter2" not in body and "redis://app:***@10.0.0.1:6379/0" in body
    assert get(server.url + "/nope")[0] == 404


def test_a_port_alone_binds_loopback_only(server: MetricsServer) -> None:
    assert server.address[0] == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:")


def test_a_probe_that_raises_is_a_503_not_a_crash(registry: CollectorRegistry) -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("token=abc123 oops")

    s = MetricsServer(MetricsConf(listen=str(free_port())), registry, health=broken, ready=broken)
    s.start()
    try:
        status, body = get(s.url + "/healthz")
        assert status == 503 and "RuntimeError" in body and "abc123" not in body
    finally:
        s.close()


def test_port_taken_is_a_config_error(server: MetricsServer, registry: CollectorRegistry) -> None:
    port = server.address[1]
    other = MetricsServer(
        MetricsConf(listen=f"127.0.0.1:{port}"),
        registry,
        health=lambda: (True, ""),
        ready=lambda: (True, ""),
    )
    with pytest.raises(ConfigError, match=rf"metrics.listen 127.0.0.1:{port}: cannot listen"):
        other.start()


def test_close_is_idempotent_and_frees_the_port(registry: CollectorRegistry) -> None:
    port = free_port()
    for _ in range(2):
        s = MetricsServer(
            MetricsConf(listen=str(port)),
            registry,
            health=lambda: (True, ""),
            ready=lambda: (True, ""),
        )
        s.start()
        s.close()
        s.close()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    require_tool("openssl")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_https_with_certfile_and_keyfile(tmp_path: Path, registry: CollectorRegistry) -> None:
    cert, key = _self_signed(tmp_path)
    conf = MetricsConf(listen=str(free_port()), certfile=str(cert), keyfile=str(key))
    s = MetricsServer(conf, registry, health=lambda: (True, "ok"), ready=lambda: (True, "ok"))
    s.start()
    try:
        assert s.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        status, body = get(s.url + "/metrics", context=context)
        assert status == 200 and value(parse(body), "brokerq_test_things_total") == 3
        with pytest.raises(OSError):  # plain HTTP gets no answer from a TLS port
            get(s.url.replace("https", "http") + "/metrics", timeout=2)
    finally:
        s.close()


def test_bad_key_file_is_a_config_error(tmp_path: Path, registry: CollectorRegistry) -> None:
    (tmp_path / "c.pem").write_text("not a cert")
    conf = MetricsConf(
        listen=str(free_port()), certfile=str(tmp_path / "c.pem"), keyfile=str(tmp_path / "k")
    )
    s = MetricsServer(conf, registry, health=lambda: (True, ""), ready=lambda: (True, ""))
    with pytest.raises(ConfigError, match=r"metrics\.certfile/keyfile"):
        s.start()
